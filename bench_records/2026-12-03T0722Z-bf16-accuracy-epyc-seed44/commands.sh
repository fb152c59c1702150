#!/usr/bin/env bash
# The scratch CNN at full size, float32 then bfloat16 autocast, seed 44, 2 threads each, nothing else running.
set -euo pipefail
scripts/accuracy_pair.sh 44 "$(cd "$(dirname "$0")" && pwd)"
