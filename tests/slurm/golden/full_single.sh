#!/bin/bash
#SBATCH --job-name=clustrix-fit
#SBATCH --chdir=/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd
#SBATCH --output=/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/out.0
#SBATCH --error=/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/err.0
#SBATCH --open-mode=append
#SBATCH --cpus-per-task=4
#SBATCH --nodes=2
#SBATCH --mem=7630M
#SBATCH --time=1-02:00:00
#SBATCH --gres=gpu:2
#SBATCH --partition=gpu
#SBATCH --account=proj-42
#SBATCH --qos=high
#SBATCH --constraint=haswell
#SBATCH --exclusive
#SBATCH --mail-type=FAIL
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
