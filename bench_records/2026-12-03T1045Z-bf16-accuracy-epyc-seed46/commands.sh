#!/usr/bin/env bash
# The scratch CNN at full size, float32 then bfloat16 autocast, seed 46, 2 threads each, nothing else running.
set -euo pipefail
scripts/accuracy_pair.sh 46 "$(cd "$(dirname "$0")" && pwd)"
