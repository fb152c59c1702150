#!/usr/bin/env bash
# scratch_cnn --distributed end to end on a small subset: 2 ranks train, rank 0 alone writes the run
# folder (one log line per epoch, not two), the checkpoint then resumes in one process and again
# on 2 ranks (the rank count may change between a run and its resume).
#   scratch_cnn_distributed.sh MPIRUN BUILD_DIR
set -u
mpirun=${1:-}
build=${2:?build dir}
if [ -z "$mpirun" ] || ! command -v "$mpirun" >/dev/null; then
  echo "SKIPPED: no mpirun in this build"
  exit 77
fi
data=${DL_DATA_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -d "$data" ]; then
  echo "SKIPPED: no Fashion-MNIST at $data (Debian package dataset-fashion-mnist)"
  exit 77
fi
fail() { echo "FAILED: $*"; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/dl-dist-e2e-$$-XXXX")
trap 'rm -rf "$dir"' EXIT
args=(--data-dir "$data" --train-limit 640 --val-limit 200 --test-limit 200 --epochs 2 --batch-size 64
      --out "$dir/run")
mpi=("$mpirun" --oversubscribe --allow-run-as-root --bind-to none -np 2)
export DL_DIST_TIMEOUT=120 OMP_NUM_THREADS=1
timeout 240 "${mpi[@]}" "$build/bin/scratch_cnn" --distributed --threads 1 "${args[@]}" >"$dir/out1.txt" 2>&1 ||
  { cat "$dir/out1.txt"; fail "the 2-rank run failed"; }
grep -v batch "$dir/out1.txt"
for f in config.json history.csv last.ckpt best.ckpt metrics.json predictions.csv log.txt; do
  [ -f "$dir/run/$f" ] || fail "the run folder has no $f"
done
[ "$(grep -c '^epoch 2/2:' "$dir/run/log.txt")" = 1 ] || fail "log.txt should hold one 'epoch 2/2' line (rank 0 only)"
[ "$(wc -l <"$dir/run/history.csv")" = 3 ] || fail "history.csv should hold a header and 2 epochs"
grep -q '"world_size": 2' "$dir/run/config.json" || fail "config.json does not record 2 ranks"
grep -q 'distributed: 2 ranks x 32 images per batch' "$dir/out1.txt" || fail "no line saying 2 ranks x 32"
acc=$(sed -n 's/.*test accuracy \([0-9.]*\).*/\1/p' "$dir/out1.txt")
awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' || fail "test accuracy $acc after 2 epochs on 640 images (expected > 0.5)"
# resume the finished run in one process, then on 2 ranks: both load the 2-rank checkpoint
timeout 240 "$build/bin/scratch_cnn" --threads 2 --resume "${args[@]}" >"$dir/out2.txt" 2>&1 ||
  { cat "$dir/out2.txt"; fail "resuming in one process failed"; }
grep -q "resumed from .*: 2 of 2 epochs done" "$dir/out2.txt" || fail "one process did not resume the 2-rank run"
timeout 240 "${mpi[@]}" "$build/bin/scratch_cnn" --distributed --threads 1 --resume "${args[@]}" >"$dir/out3.txt" 2>&1 ||
  { cat "$dir/out3.txt"; fail "resuming on 2 ranks failed"; }
grep -q "resumed from .*: 2 of 2 epochs done" "$dir/out3.txt" || fail "2 ranks did not resume"
echo "2-rank run: test accuracy $acc; resumed in 1 process and on 2 ranks"
