#!/usr/bin/env bash
# Temperature scaling of the shipped models (issue 29): fit a temperature per TTA mode on val (single
# view, flip, crops; float32; test is never read), then re-pack each model with it. The weights stay
# byte for byte (float16); the card gains its calibration and class-prior tables, measured on val and
# test, and the int8 sibling's metadata the same record. Run from the repository root.
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
for name in ferkit-recommended ferkit-e0-baseline; do
  ferkit posthoc "pretrained/$name.pt" --method temperature --data_root "$data" --out "runs/calibrated/$name.pt" --force
  ferkit pack "runs/calibrated/$name.pt" --out "pretrained/$name.pt" --data_root "$data" --force
done
# The recommended model single view (Predictor's default), for docs/INFERENCE.md's coverage table
ferkit eval pretrained/ferkit-recommended.pt --no-tta --split both --data_root "$data" \
  --out results/calibration/recommended-single-view --force
