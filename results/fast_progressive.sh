#!/usr/bin/env bash
# Fast recipe (issue 4): test macro-F1 >= 0.576 in at most 12 minutes of training on a 2-core CPU.
# fer-resnet-slim (fer-resnet-fast16 with a 48-channel 24x24 block: about 1.1x faster per step)
# for 12 epochs, the first 6 on 40-pixel images (progressive resizing: about 1.25x faster steps),
# otherwise as results/fast.sh: E5 (CE + 1/sqrt(n_c) sampler), AdamW wd 0.05, one warm-up epoch
# then cosine, batch 128, bfloat16 autocast, evaluated with the crop TTA.
# Seeds run one after the other (never side by side, so the times are honest); each run's wall-clock
# time (data loading, training, val every epoch, val and test with the TTA) is written next to its
# outputs, which are copied to $OUT/fast_seed<N>/ without checkpoints. At the end `ferkit summary`
# compares them with the recipe in $BASE, paired by seed, in $OUT/summary/.
# Usage: results/fast_progressive.sh [DATA] [SEED...]   (defaults: ../shared/data/fer2013.zip; 42 1 2;
# the summary needs seeds 42, 1 and 2 of both recipes). The environment variables change the arch
# and the folders; the defaults are this recipe's. The earlier runs of the same script:
#   ARCH=fer-resnet-fast16 RUNS=runs/fast_progressive OUT=results/fast_progressive BASE=results/fast
#   ARCH=fer-resnet-fast16 RUNS=runs/fast_progressive_rerun OUT=results/fast_progressive_rerun BASE=results/fast
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
shift || true
seeds=${*:-42 1 2}
arch=${ARCH:-fer-resnet-slim}
runs=${RUNS:-runs/fast_slim}
out=${OUT:-results/fast_slim}
base=${BASE:-results/fast_progressive}
for seed in $seeds; do
  exp=fast_seed$seed
  if [ ! -f $runs/$exp/metrics.json ]; then
    start=$(date +%s)
    ferkit train --data_root "$data" --preset E5 --arch $arch --epochs 12 --small_epochs 6 \
      --small_size 40 --batch_size 128 --optimizer adamw --weight_decay 0.05 --warmup_epochs 1 --amp \
      --tta crops --seed $seed --exp $exp --runs_dir $runs
    echo "wall clock: $(( $(date +%s) - start )) s" | tee $runs/$exp/wall_clock.txt
  fi
  mkdir -p $out/$exp
  cp $runs/$exp/{config.json,epochs.csv,metrics.json,metrics_val.json,train.log,wall_clock.txt} $out/$exp/
  gzip -c $runs/$exp/predictions.csv > $out/$exp/predictions.csv.gz
done
# mean ± std over seeds, and the paired comparison with $BASE; the groups are named after the folders
b=$(basename $base) o=$(basename $out)
ferkit summary $base/fast_seed{42,1,2} $out/fast_seed{42,1,2} --group "$b=$base/*" --group "$o=$out/*" \
  --baseline $b --out $out/summary
