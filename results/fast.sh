#!/usr/bin/env bash
# The fast recipe (issue 4): at most 12 minutes of training on a 2-core CPU. The E5 recipe (CE +
# 1/sqrt(n_c) sampler) with batch 64 for 13 epochs, evaluated with the crop TTA that val chose for
# both shipped models. Prints the wall-clock time (data loading, training, val every epoch, test).
# Usage: results/fast.sh [DATA]   (DATA defaults to ../shared/data/fer2013.zip)
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
runs=runs/fast
start=$(date +%s)
ferkit train --data_root "$data" --preset E5 --epochs 13 --batch_size 64 --amp --tta crops --seed 42 --exp E5_fast --runs_dir $runs
echo "wall clock: $(( $(date +%s) - start )) s" | tee $runs/E5_fast/wall_clock.txt
