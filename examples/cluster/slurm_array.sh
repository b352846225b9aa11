#!/bin/bash
# One hwnas search on a SLURM cluster (docs/cluster.md): task 0 creates the study and runs worker 0, the other
# array tasks join it as workers. The experiment's storage.url names the PostgreSQL server (no password in the
# file: PGPASSWORD below or ~/.pgpass), its output folder lies on the shared file system.
#
#   sbatch --array=0-16 examples/cluster/slurm_array.sh experiment.yaml
#
#SBATCH --job-name=hwnas
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=08:00:00
#SBATCH --signal=B:TERM@120      # preemption/time limit: SIGTERM two minutes early; hwnas hands its trial back
set -euo pipefail
EXP=${1:?usage: sbatch --array=0-N slurm_array.sh EXPERIMENT.yaml}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# export PGPASSWORD=...          # or a ~/.pgpass file (mode 600) on the shared home
# source /shared/venvs/hwnas/bin/activate   # pip install 'hwnas[cluster]'
if [ "${SLURM_ARRAY_TASK_ID:-0}" = 0 ]; then
    exec hwnas search "$EXP"
else
    # the array's tasks start together: wait (up to 10 min) for task 0 to create the study
    exec hwnas worker "$EXP" --worker "$SLURM_ARRAY_TASK_ID" --wait 600
fi
