#!/usr/bin/env bash
# fer-resnet trained for the full budget (issue 4): E5 (CE + 1/sqrt(n_c) sampler), the recipe that
# won at long budgets on seed-cnn, and the E0 baseline on the same architecture with the same budget.
# 30 epochs at batch 128 (batch 128 runs fer-resnet at 350 img/s here against 260 at batch 64),
# AdamW (weight decay 0.05), one warm-up epoch then cosine. About 45-55 min each (this machine's speed varies) on the 2-core CPU;
# run them one after the other, never side by side, so the training times are honest.
# Usage: results/resnet.sh [DATA]   (DATA defaults to ../shared/data/fer2013.zip)
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
recipe=(--arch fer-resnet --epochs 30 --batch_size 128 --optimizer adamw --weight_decay 0.05
        --warmup_epochs 1 --amp --seed 42 --runs_dir runs/resnet --data_root "$data")
for preset in E5 E0; do
  [ -f runs/resnet/${preset}/metrics.json ] || ferkit train --preset $preset --exp $preset "${recipe[@]}"
done
