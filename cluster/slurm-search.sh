#!/usr/bin/env bash
# SLURM: start a Ray head on the first node and workers on the others, then run the search.
#   sbatch cluster/slurm-search.sh                      # new search
#   RESUME=/shared/runs/paper-rl sbatch cluster/slurm-search.sh   # finish an interrupted one
#SBATCH --job-name=nasdun
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-task=1
#SBATCH --time=24:00:00
#SBATCH --output=nasdun-%j.log
set -euo pipefail

# nasdun must be installed in this environment on every node (pip install -e . from a shared checkout).
source "${NASDUN_VENV:-$HOME/nasdun/.venv}/bin/activate"
OUT=${OUT:-/shared/runs/paper-rl-$SLURM_JOB_ID}   # a filesystem every node mounts
CONFIG=${CONFIG:-paper}

nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${nodes[0]}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address | awk '{print $1}')
port=6379
export RAY_worker_niceness=0   # Ray's workers (where the cohorts train) at the job's priority, not 15 below it

srun --nodes=1 --ntasks=1 -w "$head" ray start --head --node-ip-address="$head_ip" --port=$port \
    --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus=1 --block &
sleep 20
for node in "${nodes[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$node" ray start --address="$head_ip:$port" \
        --num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus=1 --block &
done
sleep 20

export RAY_ADDRESS="$head_ip:$port"
if [[ -n "${RESUME:-}" ]]; then
    nasdun search --resume "$RESUME" --address auto
else
    nasdun search --config "$CONFIG" --address auto --out "$OUT"
fi
