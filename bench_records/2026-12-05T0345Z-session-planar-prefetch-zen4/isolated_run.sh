#!/bin/bash
# isolated A/B of the planar convolution: algo_old (5a02814's libdl_tensor.a) vs algo_new (this session's), alternating
# processes, 2 threads; FLUSH=1 writes 64 MB between calls
cd /tmp/s11
for flush in "" 1; do
  for spec in "1 28 28 48 3 1 fwd" "1 28 28 48 3 1 dw" "3 64 64 64 7 2 fwd" "3 64 64 64 7 2 dw"; do
    echo "== ${flush:+caches flushed, }$spec (batch 64), planar forced"
    FLUSH=$flush ./alt.sh 5 $spec 15 64 planar=2
  done
done
