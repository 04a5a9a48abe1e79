#!/usr/bin/env bash
# The shipped models and the candidates they were chosen from (issue 4; README "Shipped models").
# From the repository root. Every choice below was made on val macro-F1 (with the TTA that val
# chose for each candidate); test numbers were computed once per candidate, when packed.
# Usage: results/final.sh [DATA]   (DATA defaults to ../shared/data/fer2013.zip)
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}

# Session 2, seed-cnn. Candidate A: the study's winner trained longer, E0 for 40 epochs at batch 64
# (30.0 min), then classifier re-training (cRT) tuned on val. Candidate B: the reference's final
# recipe, E5 (CE + 1/sqrt(n_c) sampler), 30 epochs at batch 256 (33.5 min).
[ -f runs/final/E0_long/metrics.json ] || \
  ferkit train --data_root "$data" --preset E0 --epochs 40 --batch_size 64 --amp --seed 42 --exp E0_long --runs_dir runs/final
[ -f runs/E5_seed42/metrics.json ] || \
  ferkit train --data_root "$data" --preset E5 --epochs 30 --amp --seed 42 --exp E5_seed42
ferkit posthoc runs/final/E0_long/best.pt --method crt --data_root "$data" --out runs/final/E0_long/crt.pt
ferkit pack runs/final/E0_long/crt.pt --data_root "$data" --tta auto --out results/final/ferkit-e0-crt.pt \
  --title "candidate: seed-cnn, E0 + cRT (post-hoc, tuned on val), 40 epochs"
ferkit pack runs/E5_seed42/best.pt --data_root "$data" --tta auto --out results/final/seedcnn-e5.pt \
  --title "candidate: seed-cnn, E5 (CE + 1/sqrt(n_c) sampler), 30 epochs"

# Session 3, fer-resnet (results/resnet.sh: E5 and E0, 30 epochs at batch 128, AdamW). Candidate C:
# E5. Candidate D: E5 + logit adjustment tuned on val.
results/resnet.sh "$data"
ferkit posthoc runs/resnet/E5/best.pt --method la --data_root "$data" --out runs/resnet/E5/la.pt
ferkit pack runs/resnet/E5/la.pt --data_root "$data" --tta auto --out results/final/resnet-e5-la.pt \
  --title "candidate: fer-resnet, E5 + logit adjustment (post-hoc, tuned on val), 30 epochs"

# Shipped: the best candidate by val macro-F1 as the recommended model, and E0 on the same
# architecture and budget as the baseline.
ferkit pack runs/resnet/E5/best.pt --data_root "$data" --tta auto --out pretrained/ferkit-recommended.pt \
  --title "ferkit recommended: fer-resnet, E5 (CE + 1/sqrt(n_c) sampler), 30 epochs"
ferkit pack runs/resnet/E0/best.pt --data_root "$data" --tta auto --out pretrained/ferkit-e0-baseline.pt \
  --title "ferkit E0 baseline: fer-resnet, softmax + CE, 30 epochs"
