#!/usr/bin/env bash
# The natural-image CS study of docs/results/image-cs.md, end to end (about 1.5 h on 2 cores):
#  1. a search on image_cs50 itself (hand designs included) and one on the synthetic `small` setting,
#     same K, protocol, budget and seed;
#  2. the top-5 averaged architecture of each;
#  3. both retrained with the six hand designs on fresh seeds (0-2; the searches used seed 7) under a
#     protocol whose stages end by patience, scored by PSNR on the four held-out test images;
#  4. ISTA / FISTA references and a reconstruction of the cameraman image.
set -euo pipefail
OUT=${1:-runs/image-cs}
K=${K:-8}
BUDGET=${BUDGET:-24}
mkdir -p "$OUT"
t0=$(date +%s)
nasdun search --setting image_cs50 --layers "$K" --protocol search --budget "$BUDGET" --cohort 6 --seed 7 --out "$OUT/search-image" --force
t1=$(date +%s)
nasdun search --setting small --layers "$K" --protocol search --budget "$BUDGET" --cohort 6 --seed 7 --out "$OUT/search-small" --force
t2=$(date +%s)
nasdun average "$OUT/search-image" --top-k 5 --out "$OUT/avg-image.json" --force
nasdun average "$OUT/search-small" --top-k 5 --out "$OUT/avg-small.json" --force
nasdun retrain --arch "$OUT/avg-image.json,$OUT/avg-small.json" --against lista,lfista,dense,2no,3no,meng2021 \
  --settings image_cs50 --seeds 3 --layers "$K" --protocol benchmarks/image_cs.yaml --out "$OUT/retrain" --force
t3=$(date +%s)
nasdun classical --setting image_cs50 --out "$OUT/classical.json" --force
nasdun reconstruct "$OUT/retrain/runs/image_cs50/seed0" --image camera --out "$OUT/reconstruct" --force
t4=$(date +%s)
echo "search image_cs50 $((t1 - t0)) s; search small $((t2 - t1)) s; retrain $((t3 - t2)) s; classical + reconstruct $((t4 - t3)) s" | tee "$OUT/timing.txt"
