#!/usr/bin/env bash
# ./study.sh            the whole study on the real data: eda, scratch_cnn, then (when the ImageNet
#                       weights are present) baseline_transfer and lr_tuning, then error_analysis
#                       and compare, into results/<date-time>/; prints where the report is.
# ./study.sh --quick    the same on a small subset with few epochs, in a few minutes.
# A step that fails is recorded (its folder's failed.json: exit status, last lines of its log) and
# the study goes on, so the report is still written and shows the failure; the exit status is then 1.
# Options: --weights PATH (default weights/resnet18-f37072fd.pth), --stand-in-weights (the weights
#          are a random stand-in, said so in the report), --image-size N (ResNet input, default 224;
#          --quick uses 32), --device cpu|cuda, --out DIR, --bin DIR (use built programs from DIR
#          and skip the set-up and build), --onnx (also write each trained model as RUN/model.onnx,
#          docs/onnx.md), --extended (then the extended study's steps, docs/extended-study.md:
#          training experiments, then robustness to corrupted images and calibration; with --quick on
#          small subsets). The extended steps print their measured time estimate before they start.
#          Its training steps (the recipe ablation, 3 seeds of the baseline and of the best recipe,
#          ensembles, distillation into a quarter-size CNN, a pair-cost CNN, ResNet18 fine-tuning when
#          the weights are present) run the ablation's rows at a short budget (5 epochs; --quick 1) and
#          the rest at 10 epochs, the seed recipe's budget; --extended-full: the ablation, the seeds
#          of both recipes, the distillation pair and the pair-cost run at 20 epochs (for a GPU, or
#          with --precision bf16 on a CPU with bfloat16 units).
#          --extended-budget MIN (default 120 without --extended-full, none with it): when the
#          estimate of the extended steps exceeds MIN minutes, shorter budgets are chosen (4/8, 3/6,
#          3/5, 2/4 epochs), once per results folder (its extended_plan.txt); 0: no limit.
#          --extended-only: only the extended steps and compare, on the trained models of an existing
#          results folder given with --out (its timings.csv keeps the earlier steps' rows).
#          --robustness-limit N: robustness on the first N test images (default all 10,000; --quick 300).
#          --precision fp32|bf16|fp16: the training programs' matmuls and convolutions in that precision
#          (mixed precision, docs/mixed-precision.md; default fp32, fp16 on CUDA only).
# Resuming: each step that finishes writes DIR/done.json (its command and time). Rerun with --out of
#          the same folder and a step whose done.json records the same command is skipped, as long as
#          no step before it ran again in this invocation (its inputs are then unchanged); compare
#          always runs. Delete a step's done.json to redo it.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/common.sh

quick=0
onnx=0
extended=0
extended_only=0
extended_full=0
robustness_limit=""
extended_budget=""
weights=weights/resnet18-f37072fd.pth
stand_in=()
image_size=""
device=cpu
precision=fp32
out=""
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --weights) weights=$2; shift ;;
    --stand-in-weights) stand_in=(--stand-in-weights) ;;
    --image-size) image_size=$2; shift ;;
    --device) device=$2; shift ;;
    --precision) precision=$2; shift ;;
    --out) out=$2; shift ;;
    --bin) bin=$2; shift ;;
    --onnx) onnx=1 ;;
    --extended) extended=1 ;;
    --extended-only) extended=1; extended_only=1 ;;
    --extended-full) extended=1; extended_full=1 ;;
    --robustness-limit) robustness_limit=$2; shift ;;
    --extended-budget) extended_budget=$2; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "study.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$extended_budget" ] && ! [[ "$extended_budget" =~ ^[0-9]+$ ]]; then
  echo "study.sh: --extended-budget takes whole minutes (0: no limit), not '$extended_budget'" >&2
  exit 2
fi
if [ "$extended_only" = 1 ] && { [ -z "$out" ] || [ ! -d "$out" ]; }; then
  echo "study.sh: --extended-only needs --out DIR, an existing results folder holding the trained models" >&2
  exit 2
fi
if [ -z "$bin" ]; then
  dl_ensure_packages
  DL_BUILD_TARGET=study_programs dl_build build  # the programs only; ./test.sh builds the tests
  bin=build/bin
fi
results=${out:-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
results=$(cd "$results" && pwd)

common=(--device "$device")
if [ "$precision" != fp32 ]; then common+=(--precision "$precision"); fi  # fp32 runs keep their commands (done.json)
scratch=()
transfer=()
lrs=()
robustness=()
if [ "$quick" = 1 ]; then
  robustness+=(--limit "${robustness_limit:-300}")
  common+=(--train-limit 2000 --val-limit 500 --test-limit 1000)
  scratch+=(--epochs 2)
  transfer+=(--epochs 3)
  lrs+=(--lrs 1e-3,1e-2)
  image_size=${image_size:-32}
fi
image_size_given=${image_size}
image_size=${image_size:-224}
# fine-tuning runs the whole ResNet18 every step: on the CPU at 64x64 unless --image-size says otherwise
finetune_size=$image_size
if [ "$device" = cpu ] && [ -z "$image_size_given" ]; then finetune_size=64; fi
finetune=()
if [ "$quick" = 1 ]; then finetune+=(--stage-epochs 1,1,1); fi
if [ "$quick" = 0 ] && [ -n "$robustness_limit" ]; then
  robustness+=(--limit "$robustness_limit")
fi

# The extended study (docs/extended-study.md): the recipe ablation, seeds, ensembles,
# distillation, pair costs and fine-tuning train models; robustness and calibration then evaluate
# them. They run after the normal study and before compare, so the report shows them. One list: a
# later experiment adds its name here and its command line in extended_command. Every program of the
# list takes --estimate (a measured time estimate, nothing written), printed before the steps start.
# Budgets: the ablation's rows train $ablation_epochs epochs each (a short fixed budget for the
# comparison), both recipes' seeds, the distillation pair and the pair-cost run $full_epochs.
ablation_rows=(baseline crop_flip erasing label_smoothing adamw cosine onecycle mix early_stop)
small_channels=24,48,128,256   # a quarter of the study CNN's parameters (1.45M -> 0.36M)
teacher_t=4
early_stop_patience=3          # the early_stop row's (experiments/lib/recipe.cpp)
if [ "$quick" = 1 ]; then
  ablation_epochs=1; full_epochs=2; study_epochs=2
elif [ "$extended_full" = 1 ]; then
  ablation_epochs=20; full_epochs=20; study_epochs=10
else
  ablation_epochs=5; full_epochs=10; study_epochs=10
  # the time budget of the extended steps (minutes): on a slower CPU the budgets step down (below)
  extended_budget=${extended_budget:-120}
fi
extended_budget=${extended_budget:-0}
# Shorter budgets, tried in this order when the estimate at the default ones exceeds the time
# budget: "ablation_epochs full_epochs" (--quick has none).
budget_ladder=("4 8" "3 6" "3 5" "2 4")
if [ "$extended_full" = 1 ]; then budget_ladder=("10 10" "5 10" "${budget_ladder[@]}"); fi
if [ "$quick" = 1 ]; then budget_ladder=(); fi
# set_extended_steps: the step list for the current budgets. The seed recipe's seeds train at the
# seeds' budget: seed 42 is the study's own scratch_cnn run when that budget is the study's, else a
# run of its own.
set_extended_steps() {
  baseline_seeds=(43 44)
  baseline42=scratch_cnn
  if [ "$full_epochs" != "$study_epochs" ]; then baseline_seeds=(42 43 44); baseline42=seeds/baseline_s42; fi
  extended_steps=()
  local r s
  for r in "${ablation_rows[@]}"; do extended_steps+=("recipe_$r"); done
  extended_steps+=(pick_recipe)
  for s in "${baseline_seeds[@]}"; do extended_steps+=("seed_baseline_$s"); done
  extended_steps+=(seed_best_42 seed_best_43 seed_best_44
                   ensemble_baseline ensemble_best ensemble_architectures distill_alone distill_student
                   cost_sensitive finetune robustness calibration)
}
set_extended_steps
# best_row: the ablation row pick_recipe chose (empty before it ran).
best_row() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("row", ""))' "$results/recipes/best.json" 2>/dev/null || true
}
# same_run SRC DIR [--estimate]: when pick_recipe chose the seed recipe, the best recipe's seed-N run
# is the seed recipe's seed-N run (same recipe, seed and budget; training is deterministic): its
# files are copied into DIR (said so in DIR/same_run.txt) instead of training it again.
same_run() {
  if [ "${3:-}" = --estimate ]; then echo "same run as $1, copied ~ 0 s"; return 0; fi
  if [ ! -f "$1/metrics.json" ] || [ -f "$1/failed.json" ]; then
    echo "study.sh: $1 did not finish, so there is nothing to copy" >&2
    return 1
  fi
  local f
  for f in "$1"/*; do
    case "${f##*/}" in done.json|stderr.txt|not_run.txt) continue ;; esac
    cp -a "$f" "$2/"
  done
  echo "pick_recipe chose the seed recipe: this run is $1 (the same recipe, seed and budget), copied" > "$2/same_run.txt"
}
# extended_command NAME: sets cmd to the step's command line and dir to its folder, and skip to a
# reason when the step cannot run (it is then recorded as not run, not_run.txt in its folder).
extended_command() {
  skip=""
  local scratch_cnn=("$bin/scratch_cnn" --split-seed 42 --resume "${common[@]}")
  local best=(--recipe-file "$results/recipes/best.json" --epochs "$full_epochs")
  local small=(--channels "$small_channels" --mix none "${best[@]}")
  case "$1" in
    recipe_*) dir=$results/recipes/${1#recipe_}
      cmd=("${scratch_cnn[@]}" --out "$dir" --recipe "${1#recipe_}" --epochs "$ablation_epochs")
      if [ "$1" = recipe_early_stop ] && [ "$ablation_epochs" -le "$early_stop_patience" ]; then
        skip="early stopping with patience $early_stop_patience cannot stop a run of $ablation_epochs epoch(s): it would repeat the mix row"
      fi ;;
    pick_recipe) dir=$results/recipes/pick; cmd=("$bin/pick_recipe" --results "$results") ;;
    seed_baseline_*) dir=$results/seeds/baseline_s${1#seed_baseline_}
      cmd=("${scratch_cnn[@]}" --out "$dir" --seed "${1#seed_baseline_}" --epochs "$full_epochs") ;;
    seed_best_*) dir=$results/seeds/best_s${1#seed_best_}
      cmd=("${scratch_cnn[@]}" --out "$dir" --seed "${1#seed_best_}" "${best[@]}")
      if [ "$(best_row)" = baseline ]; then
        local src=seeds/baseline_s${1#seed_best_}
        if [ "$1" = seed_best_42 ]; then src=$baseline42; fi
        cmd=(same_run "$results/$src" "$dir")
      fi ;;
    ensemble_baseline) dir=$results/ensembles/baseline
      cmd=("$bin/ensemble" --results "$results" --name baseline --device "$device"
           --members "$baseline42,seeds/baseline_s43,seeds/baseline_s44") ;;
    ensemble_best) dir=$results/ensembles/best_recipe
      cmd=("$bin/ensemble" --results "$results" --name best_recipe --device "$device"
           --members seeds/best_s42,seeds/best_s43,seeds/best_s44
           --teacher-out "$results/ensembles/best_recipe/teacher_T$teacher_t.ckpt" --temperature "$teacher_t") ;;
    ensemble_architectures) dir=$results/ensembles/architectures
      cmd=("$bin/ensemble" --results "$results" --name architectures --device "$device"
           --members seeds/best_s42,lr_tuning) ;;
    distill_alone) dir=$results/distill/alone
      cmd=("${scratch_cnn[@]}" --out "$dir" "${small[@]}") ;;
    distill_student) dir=$results/distill/student
      cmd=("${scratch_cnn[@]}" --out "$dir" "${small[@]}"
           --teacher "$results/ensembles/best_recipe/teacher_T$teacher_t.ckpt" --distill-temperature "$teacher_t") ;;
    cost_sensitive) dir=$results/cost/pair_cost
      cmd=("${scratch_cnn[@]}" --out "$dir" --pair-cost 1 "${best[@]}") ;;
    finetune) dir=$results/finetune
      cmd=("$bin/finetune" --out "$dir" --weights "$weights" --image-size "$finetune_size"
           "${stand_in[@]}" --resume "${common[@]}" "${finetune[@]}")
      if [ ! -f "$weights" ]; then skip="skipped by study.sh: no ImageNet weights at $weights"; fi ;;
    robustness) dir=$results/robustness
      cmd=("$bin/robustness" --results "$results" --device "$device" "${robustness[@]}") ;;
    calibration) dir=$results/calibration
      cmd=("$bin/calibration" --results "$results" --device "$device") ;;
    *) echo "study.sh: no command for extended step '$1'" >&2; exit 2 ;;
  esac
}
if [ "$extended_only" = 1 ] && [ -f "$results/timings.csv" ]; then
  # keep the normal study's rows; the extended steps and compare write theirs again
  grep -v -E "^($(IFS='|'; echo "${extended_steps[*]}")|compare)," "$results/timings.csv" > "$results/timings.csv.tmp" || true
  mv "$results/timings.csv.tmp" "$results/timings.csv"
else
  echo "step,seconds,status" > "$results/timings.csv"
fi
# Ctrl-C stops the study (after the running program has saved what it can), whatever status the
# program then exits with.
trap 'echo "study.sh: interrupted; the finished steps are in $results" >&2; exit 130' INT
failed_steps=()
# record_failure DIR NAME STATUS COMMAND...: <DIR>/failed.json with the exit status and the last
# lines of the step's log.txt and of what it printed to stderr; compare shows the model as failed.
record_failure() {
  local dir=$1 name=$2 status=$3
  shift 3
  python3 - "$dir" "$name" "$status" "$@" <<'PY' || echo "study.sh: could not write $dir/failed.json" >&2
import json, os, sys
d, name, status, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip("\n") for l in f.readlines()[-n:]]
    except OSError:
        return []
rec = {"step": name, "exit_status": status,
       "signal": status - 128 if status > 128 else None,
       "command": cmd,
       "log_tail": tail(os.path.join(d, "log.txt")),
       "stderr_tail": tail(os.path.join(d, "stderr.txt"))}
with open(os.path.join(d, "failed.json.tmp"), "w") as f:
    json.dump(rec, f, indent=2)
    f.write("\n")
os.replace(os.path.join(d, "failed.json.tmp"), os.path.join(d, "failed.json"))
PY
}
# step_done DIR COMMAND...: DIR/done.json records exactly this command (then prints its seconds);
# write_done DIR NAME SECONDS COMMAND...: writes it.
step_done() {
  local dir=$1
  shift
  [ -f "$dir/done.json" ] || return 1
  python3 - "$dir/done.json" "$@" <<'PY'
import json, sys
try:
    with open(sys.argv[1]) as f:
        rec = json.load(f)
except (OSError, ValueError):
    sys.exit(1)
if rec.get("command") != sys.argv[2:]:
    sys.exit(1)
print(rec.get("seconds", ""))
PY
}
write_done() {
  local dir=$1 name=$2 seconds=$3
  shift 3
  python3 - "$dir" "$name" "$seconds" "$@" <<'PY' || echo "study.sh: could not write $dir/done.json" >&2
import datetime, json, os, sys
d, name, seconds, cmd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
rec = {"step": name, "command": cmd, "seconds": seconds,
       "finished": datetime.datetime.now().isoformat(timespec="seconds")}
with open(os.path.join(d, "done.json.tmp"), "w") as f:
    json.dump(rec, f, indent=2)
    f.write("\n")
os.replace(os.path.join(d, "done.json.tmp"), os.path.join(d, "done.json"))
PY
}
# Set once a step has run in this invocation: every later step runs too (its inputs may have changed).
ran_a_step=0
# step NAME DIR COMMAND...: runs, times and records one program whose outputs go to DIR. Its
# stderr is also kept in DIR/stderr.txt. A failed step is recorded (timings.csv, DIR/failed.json)
# and the study goes on, so the report still gets written and shows it; Ctrl-C stops the study.
# A step whose done.json records this command is skipped while no step before it ran (see the top).
step() {
  local name=$1 dir=$2
  shift 2
  echo
  echo "== $name =="
  local prev
  if [ "$ran_a_step" = 0 ] && [ "$name" != compare ] && prev=$(step_done "$dir" "$@"); then
    echo "done earlier ($dir/done.json, ${prev} s); skipped"
    echo "$name,${prev:-0},done earlier (skipped)" >> "$results/timings.csv"
    return 0
  fi
  ran_a_step=1
  mkdir -p "$dir"
  rm -f "$dir/failed.json" "$dir/done.json"
  local t0=$SECONDS rc=0
  # stdout stays the terminal (progress lines); stderr goes to the terminal and to stderr.txt.
  # With pipefail the pipeline's status is the program's (tee succeeds).
  # tee ignores Ctrl-C, so a program that saves its state on SIGINT can still write its last lines.
  { "$@" 2>&1 1>&3 3>&- | (trap '' INT; exec tee "$dir/stderr.txt" >&2); } 3>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    echo "$name,$((SECONDS - t0)),ok" >> "$results/timings.csv"
    write_done "$dir" "$name" "$((SECONDS - t0))" "$@"
    return 0
  fi
  echo "$name,$((SECONDS - t0)),failed (exit $rc)" >> "$results/timings.csv"
  if [ "$rc" = 130 ]; then
    echo "study.sh: $name was interrupted; stopping the study (the finished steps are in $results)" >&2
    exit 130
  fi
  record_failure "$dir" "$name" "$rc" "$@"
  failed_steps+=("$name")
  echo "study.sh: $name failed (exit $rc); recorded in $dir/failed.json; going on with the other steps" >&2
}

start=$SECONDS
if [ "$extended_only" = 0 ]; then
step eda "$results/eda" "$bin/eda" --out "$results/eda"
step scratch_cnn "$results/scratch_cnn" "$bin/scratch_cnn" --out "$results/scratch_cnn" "${common[@]}" "${scratch[@]}"
if [ -f "$weights" ]; then
  step baseline_transfer "$results/baseline_transfer" "$bin/baseline_transfer" --out "$results/baseline_transfer" \
    --weights "$weights" --image-size "$image_size" --cache-dir "$results/feature_cache" "${stand_in[@]}" \
    "${common[@]}" "${transfer[@]}"
  step lr_tuning "$results/lr_tuning" "$bin/lr_tuning" --out "$results/lr_tuning" --weights "$weights" \
    --image-size "$image_size" --cache-dir "$results/feature_cache" "${stand_in[@]}" "${common[@]}" "${transfer[@]}" \
    "${lrs[@]}"
else
  msg=$("$bin/baseline_transfer" --weights "$weights" 2>&1 || true)
  echo
  echo "== baseline_transfer and lr_tuning: skipped =="
  echo "$msg"
  for m in baseline_transfer lr_tuning; do
    mkdir -p "$results/$m"
    printf 'skipped by study.sh: %s\n' "$msg" > "$results/$m/not_run.txt"
    echo "$m,0,skipped (no weights)" >> "$results/timings.csv"
  done
fi
if [ "$onnx" = 1 ]; then
  # each finished model as ONNX, next to its checkpoint; the step's own log goes to onnx/<model>/
  for m in scratch_cnn baseline_transfer lr_tuning; do
    if [ -f "$results/$m/metrics.json" ] && [ ! -f "$results/$m/failed.json" ]; then
      step "export_onnx_$m" "$results/onnx/$m" "$bin/export_onnx" "$results/$m" --output "$results/$m/model.onnx"
    fi
  done
fi
step error_analysis "$results/error_analysis" "$bin/error_analysis" --results "$results"
fi  # extended_only

# estimate_extended: prints each extended step's --estimate and fills est_secs[step] (seconds; 0 for
# a step done earlier or not run).
declare -A est_secs
robustness_per_cnn=0
n_done=0
estimate_extended() {
  echo "time estimates at $ablation_epochs epoch(s) per ablation row and $full_epochs for the other runs" \
       "(measured on a few batches of each model; steps already done are not counted):"
  local s est
  for s in "${extended_steps[@]}"; do
    extended_command "$s"
    est_secs[$s]=0
    if [ "$ran_a_step" = 0 ] && step_done "$dir" "${cmd[@]}" >/dev/null; then
      echo "  $s: done earlier, will be skipped"
      n_done=$((n_done + 1))
    elif [ -n "$skip" ]; then
      echo "  $s: will be shown as not run ($skip)"
    else
      est=$("${cmd[@]}" --estimate 2>&1) || est="$s: no estimate (the program failed; the step will say why)"
      echo "$est" | sed 's/^/  /'
      est_secs[$s]=$(echo "$est" | grep -o '~ [0-9]* s' | tail -1 | tr -dc 0-9 || true)
      est_secs[$s]=${est_secs[$s]:-0}
      if [ "$s" = robustness ]; then
        robustness_per_cnn=$(echo "$est" | grep -o 'Scratch CNN: .*~ [0-9]* s' | grep -o '~ [0-9]* s' | tr -dc 0-9 || true)
        robustness_per_cnn=${robustness_per_cnn:-0}
      fi
    fi
  done
}
# planned_seconds A F: the estimate scaled to A epochs per ablation row and F for the other runs
# (time is linear in epochs). Before the extended models exist, robustness times the study's models
# only; the extended ones add 3 full-size CNNs and 2 quarter-size ones, counted as 4 study CNNs.
planned_seconds() {
  local a=$1 f=$2 total=0 s e
  for s in "${!est_secs[@]}"; do
    e=${est_secs[$s]}
    case "$s" in
      recipe_early_stop) if [ "$a" -le "$early_stop_patience" ]; then e=0; else e=$((e * a / ablation_epochs)); fi ;;
      recipe_*) e=$((e * a / ablation_epochs)) ;;
      seed_*|distill_*|cost_sensitive) e=$((e * f / full_epochs)) ;;
      robustness) if [ ! -f "$results/seeds/best_s42/metrics.json" ]; then e=$((e + 4 * robustness_per_cnn)); fi ;;
    esac
    total=$((total + e))
  done
  # a seeds' budget other than the study's trains the seed recipe's seed 42 too
  if [ "$f" != "$study_epochs" ] && [ "$baseline42" = scratch_cnn ]; then
    total=$((total + ${est_secs[seed_baseline_43]:-0} * f / full_epochs))
  fi
  echo "$total"
}
if [ "$extended" = 1 ]; then
  echo
  echo "== extended study =="
  # The budgets are chosen once per results folder and mode (extended_plan.txt: the default budgets,
  # then the chosen ones), so that a resumed run repeats the same commands; delete it to choose again.
  plan_file=$results/extended_plan.txt
  defaults="defaults=$ablation_epochs,$full_epochs"
  if [ -f "$plan_file" ] && plan=$(grep -E -o "^$defaults ablation_epochs=[0-9]+ full_epochs=[0-9]+\$" "$plan_file"); then
    plan=${plan#"$defaults "}
    ablation_epochs=${plan#ablation_epochs=}; ablation_epochs=${ablation_epochs%% *}
    full_epochs=${plan##*full_epochs=}
    echo "budgets chosen earlier ($plan_file): $ablation_epochs epoch(s) per ablation row, $full_epochs for the other runs"
    set_extended_steps
    estimate_extended
    total_estimate=$(planned_seconds "$ablation_epochs" "$full_epochs")
  else
    estimate_extended
    total_estimate=$(planned_seconds "$ablation_epochs" "$full_epochs")
    if [ "$n_done" -gt 0 ]; then
      echo "  (some extended steps were done earlier at these budgets: they stay as they are)"
    elif [ "$extended_budget" -gt 0 ] && [ ${#budget_ladder[@]} -gt 0 ] && [ "$total_estimate" -gt $((extended_budget * 60)) ]; then
      echo "  ~ $((total_estimate / 60)) min at these budgets, over the time budget of $extended_budget min (--extended-budget)"
      for b in "${budget_ladder[@]}"; do
        read -r a f <<< "$b"
        total_estimate=$(planned_seconds "$a" "$f")
        echo "  at $a epoch(s) per ablation row and $f for the other runs: ~ $((total_estimate / 60)) min"
        if [ "$total_estimate" -le $((extended_budget * 60)) ]; then break; fi
      done
      ablation_epochs=$a; full_epochs=$f
      set_extended_steps
      echo "  chosen: $ablation_epochs epoch(s) per ablation row, $full_epochs for the other runs (the report says which runs were shortened)"
    fi
    echo "$defaults ablation_epochs=$ablation_epochs full_epochs=$full_epochs" > "$plan_file"
  fi
  echo "extended steps: ${extended_steps[*]}"
  echo "extended steps in all: ~ $((total_estimate / 60)) min (robustness counted for the models still to be trained; the ensembles' evaluation of their members, a few minutes, is not counted)"
  for s in "${extended_steps[@]}"; do
    extended_command "$s"
    if [ -n "$skip" ]; then
      mkdir -p "$dir"
      rm -f "$dir/done.json" "$dir/failed.json"
      printf '%s\n' "$skip" > "$dir/not_run.txt"
      echo "$s,0,not run (its not_run.txt says why)" >> "$results/timings.csv"
      continue
    fi
    rm -f "$dir/not_run.txt"
    step "$s" "$dir" "${cmd[@]}"
  done
fi
step compare "$results/report" "$bin/compare" --results "$results"
echo
echo "study finished in $((SECONDS - start)) s; timings in $results/timings.csv"
echo "report: $results/report/report.md"
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "study.sh: these steps failed: ${failed_steps[*]} (see failed.json in their folders and the report)" >&2
  exit 1
fi
