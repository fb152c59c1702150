#!/usr/bin/env bash
# scripts/bench.sh [bench arguments...]   the framework against PyTorch on this machine
#
# Installs OpenBLAS (libopenblas0-pthread) when run as root, so PyTorch's matmul does not run on
# Debian's reference BLAS (OpenBLAS is the rival's library only: the framework never links it), says
# which BLAS torch will load and what OPENBLAS_CORETYPE is, builds build/bin/bench (Release) and runs
# it: one JSON line per workload (tools/bench.cpp describes the fields). Arguments go to bench, e.g.
#   scripts/bench.sh --workload resnet18_fwd_64_b128 --runs 9
#   scripts/bench.sh --profile            # where the time goes, per kernel, both sides (stderr)
#   scripts/bench.sh --threads 1
# DL_BENCH_BUILD_DIR picks another build folder than build/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

python=/usr/bin/python3
dl_ensure_packages

# PyTorch's BLAS: Debian's torch links libblas.so.3, which the alternatives system points at
# OpenBLAS once it is installed (else at the slow reference BLAS).
if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bench: installing libopenblas0-pthread (for PyTorch's matmul)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libopenblas0-pthread >/dev/null
  else
    echo "bench: libopenblas0-pthread is not installed and this is not root: PyTorch's matmul may run on" >&2
    echo "       the reference BLAS; install it with: sudo apt-get install -y libopenblas0-pthread" >&2
  fi
fi
alt=/etc/alternatives/libblas.so.3-x86_64-linux-gnu
echo "bench: libblas.so.3 -> $(readlink -f "$alt" 2>/dev/null || echo 'unknown (no alternatives link)')" >&2
echo "bench: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (left as it is)" >&2
"$python" - >&2 <<'EOF' || echo "bench: warning: $python cannot import torch" >&2
import os, torch
torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # loads the BLAS
libs = sorted({os.path.realpath(l.split()[-1]) for l in open("/proc/self/maps")
               if len(l.split()) >= 6 and any(k in os.path.basename(l.split()[-1]) for k in ("blas", "mkl"))})
print(f"bench: torch {torch.__version__} uses: {', '.join(libs) or 'no separate BLAS library'}")
EOF
echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other jobs skew both sides)" >&2

build=${DL_BENCH_BUILD_DIR:-build}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$DL_JOBS" --target bench
exec "$build/bin/bench" --python "$python" "$@"
