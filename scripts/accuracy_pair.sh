#!/usr/bin/env bash
# The scratch CNN at full size (the study's recipe: Adam 1e-3, batch 64, 10 epochs), float32 then bfloat16
# autocast with one seed, one after the other, 2 threads each, into DIR/fp32 and DIR/bf16 (program output in
# DIR/<precision>.out, wall times in DIR/driver.log); then the table of scripts/accuracy_spread.py.
#     scripts/accuracy_pair.sh SEED DIR      (BIN: where scratch_cnn is, default build/bin)
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: scripts/accuracy_pair.sh SEED DIR" >&2; exit 2; }
seed=$1
dir=$2
bin=${BIN:-build/bin}
mkdir -p "$dir"
for precision in fp32 bf16; do
  start=$(date +%s)
  "$bin/scratch_cnn" --precision "$precision" --seed "$seed" --threads 2 --out "$dir/$precision" \
    > "$dir/$precision.out" 2>&1
  echo "$precision: $(( $(date +%s) - start )) s" >> "$dir/driver.log"
done
python3 "$(dirname "$0")/accuracy_spread.py" "fp32, seed $seed=$dir/fp32" "bf16, seed $seed=$dir/bf16"
