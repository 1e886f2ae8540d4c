#!/bin/bash
#SPOOL --name=clustrix-fit
#SPOOL --array=0-5
#SPOOL --time=5400
#SPOOL --cores=4
#SPOOL --mem=1908
#SPOOL --slots=2
#SPOOL --name=override
# clustrix job 20260101-000000-abcd
TASK=$(( ${SPOOL_ARRAY_TASK_ID} + 4 ))
exec >>/scratch/jobs/clustrix-fit-1/out."$TASK" 2>>/scratch/jobs/clustrix-fit-1/err."$TASK"
cd /scratch/jobs/clustrix-fit-1 || exit 97
. /scratch/jobs/clustrix-fit-1/env.sh || exit 96
exec /usr/bin/python3 /scratch/jobs/clustrix-fit-1/runner.py /scratch/jobs/clustrix-fit-1 "$TASK"
