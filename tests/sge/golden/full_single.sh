#!/bin/bash
#$ -N clustrix-fit
#$ -S /bin/bash
#$ -wd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd
#$ -o /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/sge.out
#$ -e /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/sge.err
#$ -w e
#$ -pe smp 4
#$ -l h_rt=26:00:00
#$ -l h_vmem=1908M
#$ -q long.q
#$ -P proj-42
#$ -l arch=lx-amd64
#$ -m a
#$ -M alice@example.org
# clustrix job 20260101-120000-0a1b2c3d
TASK=0
exec >>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/out."$TASK" 2>>/home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/err."$TASK"
cd /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd || exit 97
export OMP_NUM_THREADS=4
export GREETING='it'"'"'s a '"'"'test'"'"' $HOME'
module load gcc/12.2
source ~/venvs/fit/bin/activate
ulimit -c 0
exec /usr/bin/python3 /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd/runner.py /home/alice/.clustrix/jobs/clustrix-fit-20260101-120000-0a1b2c3d-00112233aabbccdd "$TASK"
