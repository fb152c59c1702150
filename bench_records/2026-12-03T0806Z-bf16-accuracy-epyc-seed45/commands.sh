#!/usr/bin/env bash
# The scratch CNN at full size (the study's recipe: Adam 1e-3, batch 64, 10 epochs, seed 45), float32
# then bfloat16 autocast, one after the other with nothing else running, 2 threads each.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-build/bin}
for precision in fp32 bf16; do
  start=$(date +%s)
  "$bin/scratch_cnn" --precision "$precision" --seed 45 --threads 2 --out "$here/$precision" > "$here/$precision.out" 2>&1
  echo "$precision: $(( $(date +%s) - start )) s" >> "$here/driver.log"
done
python3 scripts/accuracy_spread.py "fp32, seed 45=$here/fp32" "bf16, seed 45=$here/bf16"
