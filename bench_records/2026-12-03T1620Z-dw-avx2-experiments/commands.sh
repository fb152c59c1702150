#!/bin/bash
# Re-runs this record's measurements (from the repository root, after building build/): the direct weight gradient
# per layer with the in-process FMA peak, channel counts around powers of two, and the grouping microbenchmark.
set -eu
d=$(dirname "$0")
g++ -O2 -std=c++20 -fopenmp -I. "$d/layer_timing.cpp" build/libdl_tensor.a -lfmt -lz -o /tmp/layer_timing
g++ -O3 -mavx2 -mfma "$d/grad_tile_grouping.cpp" -o /tmp/grad_tile_grouping
lscpu | grep -E "Model name|L1d|L2" > "$d/cpu.txt"
for r in 1 2; do DIRECT=2 /tmp/layer_timing 7 2; done > "$d/dw_layers_direct.txt" 2>&1
for r in 1 2 3; do for c in "128 128 8 128" "128 120 8 120" "128 136 8 136" "128 64 16 64" "128 72 16 72"; do
  CUSTOM="$c" DIRECT=2 /tmp/layer_timing 7 2; done; done > "$d/dw_channel_counts.txt" 2>&1
for args in "72 64 30 64" "144 128 30 64" "144 136 20 64" "128 128 20 64"; do /tmp/grad_tile_grouping $args; done \
  > "$d/grouping_microbenchmark.txt" 2>&1
