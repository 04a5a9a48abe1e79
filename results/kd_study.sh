#!/usr/bin/env bash
# Distillation on a 2-core CPU (issue 27, item 1): what distillation adds to the fast recipe, how it
# composes with re-balancing, and what storing the teacher's outputs costs. One seed (42) each,
# single view (--tta none: how predict, serve and Predictor run); the seeds' spread of the same
# recipe without a teacher (results/fast_slim: three seeds) is the noise to read them against.
#   kd_none          fast-bf16 (E5: CE + the sqrt sampler), no teacher
#   kd_wide_E5       + the stored ensemble of three fer-resnet-wide teachers (results/teachers), alpha 0.5, T 4
#   kd_wide_E0       the same, without the sampler: does the teacher's balance replace re-sampling?
#   kd_small_online  teacher = the shipped model, run on the student's own augmented batch
#   kd_small_stored  the same teacher's logits stored once on un-augmented images (`ferkit teacher-logits`)
# Choices are read on val; test is written by every run but not used to choose.
# Usage: results/kd_study.sh [DATA] [EXP...]   (DATA: the FER-2013 zip, folder or store; default
#   ../shared/data/fer2013.zip; EXP: the runs to do, default all five in the order below)
set -euo pipefail
data=${1:-../shared/data/fer2013.zip}
shift || true
runs=runs/kd_study
base=(--preset fast-bf16 --tta none --seed 42 --runs_dir $runs --data_root "$data")
mkdir -p $runs
small=$runs/shipped-teacher.npz
exps=("$@")
[ ${#exps[@]} -gt 0 ] || exps=(kd_none kd_wide_E5 kd_wide_E0 kd_small_stored kd_small_online)
[[ -f $small || ! " ${exps[*]} " =~ " kd_small_stored " ]] || ferkit teacher-logits pretrained/ferkit-recommended.pt --data_root "$data" --out $small --device cpu
declare -A extra=(
  [kd_none]=""
  [kd_wide_E5]="--teacher results/teachers/T-wide-ensemble.npz"
  [kd_wide_E0]="--teacher results/teachers/T-wide-ensemble.npz --sampler default"
  [kd_small_online]="--teacher pretrained/ferkit-recommended.pt"
  [kd_small_stored]="--teacher $small"
)
for exp in "${exps[@]}"; do
  if [ ! -f $runs/$exp/metrics.json ]; then
    start=$(date +%s)
    # shellcheck disable=SC2086
    ferkit train "${base[@]}" ${extra[$exp]} --exp $exp --overwrite
    echo "wall clock: $(( $(date +%s) - start )) s" | tee $runs/$exp/wall_clock.txt
  fi
  mkdir -p results/kd_study/$exp
  cp $runs/$exp/{config.json,epochs.csv,metrics.json,metrics_val.json,train.log,wall_clock.txt} results/kd_study/$exp/
  gzip -c $runs/$exp/predictions.csv > results/kd_study/$exp/predictions.csv.gz
done
