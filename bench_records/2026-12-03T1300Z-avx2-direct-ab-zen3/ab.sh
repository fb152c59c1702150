#!/bin/bash
# alternate: the AVX2 direct convolution (default) and DL_CONV_DIRECT=0 (the paths before it), framework only
cd /work/main
for r in 1 2 3; do
  for side in direct nodirect; do
    if [ $side = nodirect ]; then export DL_CONV_DIRECT=0; else unset DL_CONV_DIRECT; fi
    for w in resnet18_fwd_224_b32 resnet18_fwd_64_b128 resnet18_train_64_b64 scratch_train_b64; do
      v=$(build/bin/bench --python /usr/bin/python3 --no-pytorch --runs 3 --workload $w 2>/dev/null | grep '"workload"' | python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(round(d["framework"],2))')
      echo "$r $side $w $v"
    done
  done
done
