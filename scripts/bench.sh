#!/usr/bin/env bash
# scripts/bench.sh [bench arguments...]   the framework against PyTorch on this machine, as a record
#
# Installs OpenBLAS (libopenblas0-pthread) when run as root, so PyTorch's matmul does not run on
# Debian's reference BLAS (OpenBLAS is the rival's library only: the framework never links it), says
# which BLAS torch will load and what OPENBLAS_CORETYPE is, builds build/bin/bench (Release) and runs
# it (tools/bench.cpp describes the protocol and the fields). Arguments go to bench, e.g.
#   scripts/bench.sh --alone              # every workload, and the check against each side run alone
#   scripts/bench.sh --workload resnet18_fwd_64_b128 --runs 9
#   scripts/bench.sh --profile            # where the time goes, per kernel, both sides (stderr)
#   scripts/bench.sh --threads 1
#
# Every run is written as a benchmark record, bench_records/<UTC date-time>-<host>-<cpu>/:
#   bench.jsonl  bench's JSON lines (the machine line first: CPU model, measured FP32 peak, kernel, ...)
#   bench.log    everything printed on stderr (BLAS and threading found, summary, profiles)
#   meta.json    date, host, command line, git commit (and whether the tree had changes), kernel, CPUs,
#                and the DL_* switches in force (DL_CONV_ALGO, DL_CONV_PACKED, ...)
#   table.md     the markdown table (tools/bench_table.py), the one the README quotes
# The README's figures come from a committed record only: regenerate its table with
#   python3 tools/bench_table.py bench_records/<record>
#
# Environment: DL_BENCH_BUILD_DIR picks another build folder than build/; DL_BENCH_RECORDS another
# folder than bench_records/ for the records; DL_BENCH_NO_RECORD=1 writes no record;
# DL_BENCH_NO_INSTALL=1 installs nothing (the record still says which BLAS torch loaded).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

python=/usr/bin/python3
if [ "${DL_BENCH_NO_INSTALL:-0}" != 1 ]; then
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
fi

build=${DL_BENCH_BUILD_DIR:-build}
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" -j "$DL_JOBS" --target bench >&2

record=
if [ "${DL_BENCH_NO_RECORD:-0}" != 1 ]; then
  cpu=$(LC_ALL=C lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  [ -n "$cpu" ] || cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1)
  # "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz" -> "xeon-platinum-8480"
  cpu_short=$(echo "$cpu" | tr 'A-Z' 'a-z' | sed -e 's/([^)]*)//g' -e 's/@.*//' -e 's/\b\(intel\|amd\|cpu\|processor\|core\)\b//g' \
              -e 's/[^a-z0-9]\+/-/g' -e 's/^-*//' -e 's/-*$//')
  record=${DL_BENCH_RECORDS:-bench_records}/$(date -u +%Y-%m-%dT%H%M%SZ)-$(hostname -s 2>/dev/null || echo host)-${cpu_short:-cpu}-$(nproc)cpu
  mkdir -p "$record"
  exec 2> >(tee -a "$record/bench.log" >&2)
fi

alt=/etc/alternatives/libblas.so.3-x86_64-linux-gnu
echo "bench: libblas.so.3 -> $(readlink -f "$alt" 2>/dev/null || echo 'unknown (no alternatives link)')" >&2
echo "bench: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (left as it is)" >&2
echo "bench: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other jobs skew the figures: see the record's alone check)" >&2

cmd=("$build/bin/bench" --python "$python" "$@")
if [ -z "$record" ]; then
  exec "${cmd[@]}"
fi
"$python" - "$record" "$0 $*" "${cmd[*]}" "$cpu" <<'EOF' || echo "bench: warning: could not write $record/meta.json" >&2
import json, os, platform, subprocess, sys, time
record, command, bench_command, cpu = sys.argv[1:5]
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
meta = {"record": record, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
        "command": command, "bench_command": bench_command, "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "kernel": f"{platform.system()} {platform.release()}", "cpu_model": cpu, "cpus": os.cpu_count(),
        "blas_alternative": os.path.realpath("/etc/alternatives/libblas.so.3-x86_64-linux-gnu"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "build_dir": os.environ.get("DL_BENCH_BUILD_DIR", "build"),
        # the framework's own switches in force (DL_CONV_ALGO, DL_CONV_PACKED, DL_GEMM_KERNEL, ...)
        "dl_environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("DL_")}}
json.dump(meta, open(os.path.join(record, "meta.json"), "w"), indent=1)
EOF
set +e
"${cmd[@]}" | tee "$record/bench.jsonl"
rc=${PIPESTATUS[0]}
set -e
if grep -q '"workload"' "$record/bench.jsonl" 2>/dev/null; then
  "$python" tools/bench_table.py "$record" > "$record/table.md"
  echo >&2
  cat "$record/table.md" >&2
fi
echo "bench: record written to $record/ (commit it to quote its figures in the README)" >&2
exit "$rc"
