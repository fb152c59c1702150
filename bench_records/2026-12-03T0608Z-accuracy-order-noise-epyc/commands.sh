#!/usr/bin/env bash
# The scratch CNN at full size (the study's recipe: Adam 1e-3, batch 64, 10 epochs, seed 42), float32 then bfloat16
# autocast, with the direct convolution switched off (DL_CONV_DIRECT=0: the convolutions run on the GEMM, implicit
# GEMM and Winograd paths instead, which sum in another order), one after the other, 2 threads each.
# Then the table of this record's README: scripts/accuracy_spread.py over these runs and the seed-42 pair with the
# direct convolution (bench_records/2026-12-03T0324Z-bf16-accuracy-epyc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-build/bin}
for precision in fp32 bf16; do
  start=$(date +%s)
  DL_CONV_DIRECT=0 "$bin/scratch_cnn" --precision "$precision" --seed 42 --threads 2 --out "$here/$precision-gemm" \
    > "$here/$precision-gemm.out" 2>&1
  echo "$precision-nodirect: $(( $(date +%s) - start )) s" >> "$here/driver.log"
done
pair=$here/../2026-12-03T0324Z-bf16-accuracy-epyc
python3 scripts/accuracy_spread.py "fp32, direct (0324Z)=$pair/fp32" "bf16, direct (0324Z)=$pair/bf16" \
  "fp32, GEMM paths=$here/fp32-gemm" "bf16, GEMM paths=$here/bf16-gemm"
