#!/bin/bash
#$ -N clustrix-fit
#$ -S /bin/bash
#$ -wd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd
#$ -o /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/sge.out
#$ -e /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/sge.err
#$ -w e
# clustrix job 20260101-120000-0a1b2c3d
TASK=0
exec >>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/out."$TASK" 2>>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/err."$TASK"
cd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd || exit 97
case "$(ls -ld .)" in d????w*|d???????w*) private=no;; *) private=yes;; esac
if [ ! -O . ] || [ "$private" = no ]; then
  echo "clustrix: refusing to run: the job directory $PWD is not this user's private directory (replaced since it was staged?)" >&2; exit 95
fi
. ./env.sh || exit 96
exec /usr/bin/python3 ./runner.py . "$TASK"
