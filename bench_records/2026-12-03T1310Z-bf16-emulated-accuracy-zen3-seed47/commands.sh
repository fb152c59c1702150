#!/usr/bin/env bash
# The scratch CNN at full size, float32 then bfloat16 autocast, seed 47, 2 threads each, nothing else running, on
# an AMD EPYC without AVX-512 (Zen 3 class): the bfloat16 convolutions run the AVX2 direct convolution's emulation
# (rounded float32 operands, FMAs) where the algorithm search takes it. Commit 82b2558.
set -euo pipefail
scripts/accuracy_pair.sh 47 "$(cd "$(dirname "$0")" && pwd)"
