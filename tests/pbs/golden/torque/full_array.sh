#!/bin/bash
#PBS -N clustrix-fit
#PBS -S /bin/bash
#PBS -l nodes=1:ppn=4:gpus=2
#PBS -l mem=7630mb
#PBS -l walltime=26:00:00
#PBS -q gpuq
#PBS -A proj-42
#PBS -t 0-39%5
#PBS -m a
#PBS -M alice@example.org
# clustrix job 20260101-120000-0a1b2c3d
TASK="${PBS_ARRAYID}"
exec >>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/out."$TASK" 2>>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/err."$TASK"
cd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd || exit 97
case "$(ls -ld .)" in d????w*|d???????w*) private=no;; *) private=yes;; esac
if [ ! -O . ] || [ "$private" = no ]; then
  echo "clustrix: refusing to run: the job directory $PWD is not this user's private directory (replaced since it was staged?)" >&2; exit 95
fi
. ./env.sh || exit 96
exec /usr/bin/python3 ./runner.py . "$TASK"
