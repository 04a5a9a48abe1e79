#!/usr/bin/env bash
# The strategy study at convergence (issue 17, docs/RESULTS.md). From the repository root:
#   ferkit sweep results/converged.toml --jobs 2   train the grid (finished runs are skipped; rerun to go on)
#   results/converged.sh collect                   copy each finished run's small outputs to results/converged/runs/
#   results/converged.sh posthoc                   PH-LA, PH-TAUNORM, PH-CRT on each E0 run, tuned on val (needs its best.pt)
#   results/converged.sh report                    ferkit summary over results/converged/runs/ -> results/converged/summary/,
#                                                  the budget rule's runs (runs_30ep/, runs_40ep/) -> summary_budget/,
#                                                  E5 against E0 both at 40 epochs -> summary_40ep/
# `report` reads only committed files (metrics, epochs.csv, predictions), so anyone can recompute every
# table cell from a clean checkout. Nothing is overwritten: a run already collected is left as it is.
set -euo pipefail
runs=${RUNS:-runs/converged}
out=${OUT:-results/converged}
data=${DATA:-../shared/data/fer2013.zip}

collect() {  # finished runs only: metrics.json is written last
  for d in "$runs"/*/; do
    d=${d%/}; name=$(basename "$d"); dest=$out/runs/$name
    [ -f "$d/metrics.json" ] || continue
    [ -f "$dest/metrics.json" ] && continue
    mkdir -p "$dest"
    for f in config.json epochs.csv metrics.json metrics_val.json train.log posthoc.json; do
      [ -f "$d/$f" ] && cp "$d/$f" "$dest/"
    done
    for f in predictions predictions_val; do
      [ -f "$d/$f.csv" ] && gzip -9 -c "$d/$f.csv" > "$dest/$f.csv.gz"
    done
    echo "collected $name"
  done
}

posthoc() {  # each E0 seed's best checkpoint, adjusted three ways, each tuned on val
  for ckpt in "$runs"/E0_seed*/best.pt; do
    [ -f "$runs/$(basename "$(dirname "$ckpt")")/metrics.json" ] || continue  # the E0 run has finished
    seed=${ckpt%/best.pt}; seed=${seed##*_seed}
    for method in la taunorm crt; do
      dest=$runs/PH-$(echo "$method" | tr a-z A-Z)_seed$seed   # PH-LA, PH-TAUNORM, PH-CRT
      [ -f "$dest/metrics.json" ] && continue
      mkdir -p "$dest"
      ferkit posthoc "$ckpt" --method "$method" --data_root "$data" --out "$dest/model.pt"
      ferkit eval "$dest/model.pt" --data_root "$data" --split both --out "$dest"
    done
  done
}

report() {
  ferkit summary "$out/runs" --baseline E0 --out "$out/summary"
  # The budget rule: E5 and LDAM-DRW at each budget they were trained at, and E0 at 30 and 40, against E0 at 30.
  ferkit summary "$out"/runs_30ep/*/ "$out"/runs_40ep/*/ "$out"/runs/E0_seed*/ "$out"/runs/E0-40ep_seed*/ \
    "$out"/runs/E5_seed*/ "$out"/runs/LDAM-DRW_seed*/ --group 'E5-30ep=*runs_30ep/E5_seed*' \
    --group 'LDAM-DRW-30ep=*runs_30ep/LDAM-DRW_seed*' --group 'LDAM-DRW-40ep=*runs_40ep/LDAM-DRW_seed*' \
    --baseline E0 --out "$out/summary_budget"
  # E5 against E0 at equal budget, both at 40 epochs.
  ferkit summary "$out"/runs/E0-40ep_seed*/ "$out"/runs/E5_seed*/ --baseline E0-40ep --out "$out/summary_40ep"
}

case ${1:-} in
  collect|posthoc|report) "$1" ;;
  *) echo "usage: results/converged.sh collect|posthoc|report" >&2; exit 2 ;;
esac
