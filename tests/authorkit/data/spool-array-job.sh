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
case "$(ls -ld .)" in d????w*|d???????w*) private=no;; *) private=yes;; esac
if [ ! -O . ] || [ "$private" = no ]; then
  echo "clustrix: refusing to run: the job directory $PWD is not this user's private directory (replaced since it was staged?)" >&2; exit 95
fi
. ./env.sh || exit 96
exec /usr/bin/python3 ./runner.py . "$TASK"
