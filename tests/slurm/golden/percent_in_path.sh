#!/bin/bash
#SBATCH --job-name=clustrix-fit
#SBATCH --chdir=/scratch/100%/clustrix-f-1-2-3
#SBATCH --output=/scratch/100%%/clustrix-f-1-2-3/out.%a
#SBATCH --error=/scratch/100%%/clustrix-f-1-2-3/err.%a
#SBATCH --open-mode=append
#SBATCH --cpus-per-task=1
#SBATCH --array=0-1
# clustrix job 20260101-120000-0a1b2c3d
TASK="${SLURM_ARRAY_TASK_ID}"
exec >>/scratch/100%/clustrix-f-1-2-3/out."$TASK" 2>>/scratch/100%/clustrix-f-1-2-3/err."$TASK"
cd /scratch/100%/clustrix-f-1-2-3 || exit 97
case "$(ls -ld .)" in d????w*|d???????w*) private=no;; *) private=yes;; esac
if [ ! -O . ] || [ "$private" = no ]; then
  echo "clustrix: refusing to run: the job directory $PWD is not this user's private directory (replaced since it was staged?)" >&2; exit 95
fi
. ./env.sh || exit 96
exec /usr/bin/python3 ./runner.py . "$TASK"
