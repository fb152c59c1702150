#!/bin/bash
# probe: in the step harness, the fill of the block the step freed last: by thread 0, by thread 1, by the main thread alone
cd /tmp/s13
for m in 15 16 11 13; do echo -n "mode $m: "; ITERS=12 OMP_NUM_THREADS=2 ./step $m | grep -o "fill [0-9.]* ms ([0-9.]* GB/s)"; done
