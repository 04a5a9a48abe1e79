#!/usr/bin/env bash
# fer-resnet trained for the full budget (issue 4): E5 (CE + 1/sqrt(n_c) sampler), the recipe that
# won at long budgets on seed-cnn, and the E0 baseline on the same architecture with the same budget.
# 30 epochs at batch 128 (a first timing favoured 128 over 64 for speed; `python bench/train_step.py`
# later found no reliable difference on this noisy machine: 337 vs 336 and 255 vs 280 img/s),
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
