#!/bin/bash
#SBATCH --job-name=clustrix-fit
#SBATCH --chdir="/home/bob smith/clustrix jobs/clustrix-f-1-2-3"
#SBATCH --output="/home/bob smith/clustrix jobs/clustrix-f-1-2-3/out.%a"
#SBATCH --error="/home/bob smith/clustrix jobs/clustrix-f-1-2-3/err.%a"
#SBATCH --open-mode=append
#SBATCH --cpus-per-task=1
#SBATCH --mem=1500M
#SBATCH --partition=long
#SBATCH --array=0-2
# clustrix job 20260101-120000-0a1b2c3d
TASK="${SLURM_ARRAY_TASK_ID}"
exec >>'/home/bob smith/clustrix jobs/clustrix-f-1-2-3'/out."$TASK" 2>>'/home/bob smith/clustrix jobs/clustrix-f-1-2-3'/err."$TASK"
cd '/home/bob smith/clustrix jobs/clustrix-f-1-2-3' || exit 97
exec /usr/bin/python3 '/home/bob smith/clustrix jobs/clustrix-f-1-2-3/runner.py' '/home/bob smith/clustrix jobs/clustrix-f-1-2-3' "$TASK"
