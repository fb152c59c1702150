#!/usr/bin/env bash
# The scratch CNN at full size, float32 then bfloat16 autocast, seed 43, 2 threads each, nothing else running
# (run as the same loop, written out, before scripts/accuracy_pair.sh existed).
set -euo pipefail
scripts/accuracy_pair.sh 43 "$(cd "$(dirname "$0")" && pwd)"
