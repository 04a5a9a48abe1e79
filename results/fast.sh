#!/usr/bin/env bash
# The fast recipe (issue 4): at most 12 minutes of training on a 2-core CPU. The recommended
# model's recipe (fer-resnet, E5: CE + 1/sqrt(n_c) sampler, batch 128, AdamW, one warm-up epoch
# then cosine) cut to 6 epochs, evaluated with the crop TTA that val chose for the shipped models.
# Prints the wall-clock time (data loading, training, val every epoch, val and test with the TTA).
# (The session-2 fast recipe, seed-cnn E5 for 13 epochs, is in results/fast_seedcnn/.)
# Usage: results/fast.sh [DATA]   (DATA defaults to ../shared/data/fer2013.zip)
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
runs=runs/fast
start=$(date +%s)
ferkit train --data_root "$data" --preset E5 --arch fer-resnet --epochs 6 --batch_size 128 --optimizer adamw \
  --weight_decay 0.05 --warmup_epochs 1 --amp --tta crops --seed 42 --exp resnet_E5_fast --runs_dir $runs
echo "wall clock: $(( $(date +%s) - start )) s" | tee $runs/resnet_E5_fast/wall_clock.txt
