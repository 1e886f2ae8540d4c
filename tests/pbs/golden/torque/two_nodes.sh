#!/bin/bash
#PBS -N clustrix-fit
#PBS -S /bin/bash
#PBS -l nodes=2:ppn=8
#PBS -l mem=1500mb
# clustrix job 20260101-120000-0a1b2c3d
TASK=0
exec >>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/out."$TASK" 2>>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/err."$TASK"
cd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd || exit 97
. /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/env.sh || exit 96
exec /usr/bin/python3 /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/runner.py /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd "$TASK"
