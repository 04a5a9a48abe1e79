#!/usr/bin/env bash
# Post-hoc strategies of the study (issue 4): each tuned on val on top of the study's E0 runs.
# Run after `ferkit sweep results/study.toml`, from the repository root.
set -euo pipefail
runs=${1:-runs/study}
for seed in 1 2 3; do
  for method in la taunorm crt; do
    name=PH-$(echo "$method" | tr a-z A-Z)        # PH-LA, PH-TAUNORM, PH-CRT
    out=$runs/${name}_seed$seed
    [ -f "$out/metrics.json" ] && continue        # done already
    mkdir -p "$out"
    ferkit posthoc "$runs/E0_seed$seed/best.pt" --method "$method" --out "$out/model.pt"
    ferkit eval "$out/model.pt" --split both --out "$out"
  done
done
