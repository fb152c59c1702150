#!/bin/sh
# bench's --side-limit-seconds: a PyTorch side that never answers (a stand-in script that sleeps) is stopped at the
# limit, and its row says so (null throughput, no ratio, "missing_sides" with the reason) instead of bench hanging.
# The stand-in also records how it would take a hangup: the sides ignore SIGHUP (tools/bench.cpp, class Child).
# Usage: bench_side_limit.sh BENCH
set -eu
bench=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'import signal, sys, time\nh = signal.getsignal(signal.SIGHUP)\nopen(sys.argv[0] + ".hup", "w").write("ignored" if h == signal.SIG_IGN else repr(h))\ntime.sleep(600)\n' \
  > "$dir/silent_torch.py"
start=$(date +%s)
"$bench" --workload sgemm_1024 --runs 1 --warmup-seconds 0.1 --run-seconds 0.05 --no-pytorch-best \
  --python "$(command -v python3)" --torch-script "$dir/silent_torch.py" --side-limit-seconds 2 \
  > "$dir/out.jsonl" 2> "$dir/err.txt" || { cat "$dir/err.txt"; echo "bench failed"; exit 1; }
took=$(( $(date +%s) - start ))
python3 - "$dir/out.jsonl" "$took" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
row = [r for r in rows if r.get("workload") == "sgemm_1024"]
assert len(row) == 1, rows
r = row[0]
assert r["framework"] and r["framework"] > 0, r
assert r["pytorch"] is None, r["pytorch"]
assert "ratio_default" not in r and "ratio" not in r, r
assert "2 s" in r["missing_sides"]["pytorch"], r.get("missing_sides")
assert int(sys.argv[2]) < 60, f"bench took {sys.argv[2]} s"
print("ok: the silent side was stopped at the limit:", r["missing_sides"]["pytorch"])
PY
hup=$(cat "$dir/silent_torch.py.hup" 2>/dev/null || echo "not written")
if [ "$hup" != "ignored" ]; then
  echo "the side's SIGHUP disposition is $hup, not ignored"
  exit 1
fi
echo "ok: the side ignores SIGHUP"
if pgrep -f "$dir/silent_torch.py" >/dev/null; then
  echo "the silent side is still running"
  exit 1
fi
