#!/usr/bin/env bash
# One-shot GPU check for a lent machine (one H100/H200, no Ray/Optuna/MLflow, no internet).
#
#   OUT=/some/empty/dir bash benchmarks/gpu_check.sh                  # every default step
#   STEPS=bench,trials OUT=/some/empty/dir bash benchmarks/gpu_check.sh   # only these, in this order
#
# `env` always runs first; then the named steps of STEPS (comma-separated, default
# bench,trials,packing,fashion), each a shell function `step_NAME` below: add a step by defining
# one. A step runs its commands through `run_step NAME CAP_S CMD...`, which puts them under
# `timeout`, logs exit code and duration, and never stops the script. A deadline
# (GPU_CHECK_DEADLINE_S, default 480 s: about 8 minutes on the card) caps the whole run: a
# command gets min(its cap, time left) and is skipped when under 10 s are left.
# Steps:
#   env      (~10 s)  nvidia-smi, versions, device                       -> env.txt
#   bench    (~40-80 s, cap 150) python -m benchmarks.run: seed_cnn, vgg16, resnet18 at width 1.0,
#                     batch 256, 32 timed + 5 warm-up batches per stage, 3 repeats -> <gpu>-<date>.json/.md
#   trials   (~30 + 15 s) python -m study trial --dataset synthetic (50,000 images, 10 epochs, batch 256) of
#                     resnet18 and seed_cnn, standard; with the bench's results in $OUT, their training img/s
#                     and training share of wall time are added to <gpu>-<date>.json/.md (benchmarks.trial_efficiency)
#                                                                        -> trials.json
#   pytest   (~30 s, cap 75; not a default step) tests/unit on the CPU (torch/Python compatibility) -> pytest_unit.txt
#   compile  (cap 90; not a default step) the benchmark with --compile on seed_cnn -> compile-<gpu>-<date>.json
#   fashion  (~2-4 min, cap 300; best run alone: STEPS=fashion) seed_cnn on the full Fashion-MNIST,
#                     standard, layer_to_layer and greedy at their defaults, 3 seeds each, all 9 trials
#                     at once on the card (python -m benchmarks.fashion_check) -> fashion.json/.md.
#                     The files travel with the repository: before the run
#                       mkdir -p .data/fashion-mnist
#                       cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/
#                     and copy the git-ignored .data/ folder along with the repository;
#                     FASHION_DIR overrides the folder.
#   packing  (~4 x 30-60 s, cap 90 each) 1, 2, 4, 8 concurrent `python -m study trial` processes on the one
#                     GPU (what Ray's fractional GPUs start), seed_cnn on synthetic CIFAR-size data:
#                     aggregate img/s and per-trial slowdown vs 1 alone -> packing.json (+ table in log)
#   sweep    (~2 min, cap 90 + 200; not a default step) the sweep users run, on the card: the
#                     quick spec on digits, seed_cnn's 3 arms, 4 search trials of 4 epochs each, all
#                     4 at once on the one GPU (resources.gpu=0.25), then 1 seed per arm. Ray,
#                     Optuna and MLflow come from the GPU kit: `make gpu-kit` writes build/gpu-kit,
#                     copy that folder along (GPU_KIT: another place); it is installed into a venv
#                     that sees the machine's torch. An interpreter that has them is used as is.
#                     The study folder (report, MLflow store, logs, console output)
#                     -> sweep-<gpu>-<date>.tar.gz (unpack it under benchmarks/results/ to commit
#                     it); the report is also printed in the log.
# Everything printed also goes to log.txt. The files land in $OUT, flat.
#
# GPU_CHECK_SMOKE=1 runs the same steps on the CPU with tiny settings (to test this script);
# PYTHON picks the interpreter (default python3).
set -u

OUT=${OUT:?set OUT to the output folder}
PY=${PYTHON:-python3}
SMOKE=${GPU_CHECK_SMOKE:-0}
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-480}
STEPS=${STEPS:-bench,trials,packing,fashion}
MIN_STEP_S=10
export PYTHONUNBUFFERED=1 COLUMNS=120 MPLBACKEND=Agg

if [[ $SMOKE == 1 ]]; then
    DEVICE=cpu
    EPOCHS=3
    TRIAL_BATCH=32  # the bench's, so that the smoke trial of seed_cnn has a benchmark to compare with
    TRIAL_EXTRA=(--set width=0.25 --set max_train_samples=256)
    PACK_EXTRA=(--epochs 2 --set width=0.25 --set max_train_samples=512 --set batch_size=64)
    BENCH_ARGS=(--models seed_cnn:0.25 --batch-size 32 --batches 2 --warmup 1 --repeats 1 --threads 1)
    COMPILE_ARGS=(--models seed_cnn:0.25 --methods layer_to_layer --batch-size 32 --batches 1 --warmup 1
                  --repeats 1 --threads 1)
else
    DEVICE=cuda
    EPOCHS=10
    TRIAL_BATCH=256
    TRIAL_EXTRA=()
    PACK_EXTRA=(--epochs 3 --set batch_size=256)  # 50,000 synthetic images an epoch; epoch 1 is warm-up
    # widths 1.0 and batch 256: big enough that the GPU, not Python, sets the time
    BENCH_ARGS=(--models seed_cnn:1.0 vgg16:1.0 resnet18:1.0 --batch-size 256 --batches 32 --warmup 5 --repeats 3)
    # seed_cnn: 5 blocks + head + 1 aux head stay under dynamo's recompile limit (8) for nn.Module.compile
    COMPILE_ARGS=(--models seed_cnn:1.0 --methods layer_to_layer --batch-size 256 --batches 24 --warmup 5
                  --repeats 2)
fi

START=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
TRIALS_DIR=$WORK/trials
mkdir -p "$OUT" "$TRIALS_DIR"
SUMMARY=()

# run_step NAME CAP_S CMD...: run CMD under timeout min(CAP_S, time left), log its exit code and duration
run_step() {
    local name=$1 cap=$2
    shift 2
    local left=$((DEADLINE_S - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if ((limit < MIN_STEP_S)); then
        echo "=== [$name] SKIPPED: ${left}s left of the ${DEADLINE_S}s deadline"
        SUMMARY+=("$name: skipped (deadline)")
        return 0
    fi
    echo "=== [$name] start at +$((SECONDS - START))s, limit ${limit}s: $*"
    local t0=$SECONDS rc
    timeout -k 5 "$limit" "$@"
    rc=$?
    local note=""
    ((rc == 124 || rc == 137)) && note=" (timed out)"
    echo "=== [$name] rc=$rc$note after $((SECONDS - t0))s"
    SUMMARY+=("$name: rc=$rc$note, $((SECONDS - t0))s")
}

cat >"$WORK/env.py" <<'EOF'
import importlib.util
import platform
import sys

import torch
import torchvision

print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "| torchvision", torchvision.__version__)
print("cuda", torch.version.cuda, "| cudnn", torch.backends.cudnn.version(), "| available", torch.cuda.is_available())
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0),
          "| memory GiB", round(props.total_memory / 2**30, 1), "| bf16", torch.cuda.is_bf16_supported())
print("threads", torch.get_num_threads())
for name in ("ray", "optuna", "mlflow", "sklearn", "pandas", "pyarrow", "rich", "pytest", "pytest_timeout"):
    print(f"{name}: {'present' if importlib.util.find_spec(name) else 'absent'}")
EOF

cat >"$WORK/merge_trials.py" <<'EOF'
"""Every trial JSON so far -> one trials.json; with --print, a summary table (img/s ep2+: without the first epoch)."""
import json
import sys
from pathlib import Path

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
trials = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
out.write_text(json.dumps(trials, indent=1) + "\n")
if "--print" in sys.argv:
    print(f"{'trial':<22} {'test_acc':>8} {'img/s':>9} {'img/s ep2+':>10} {'peak MB':>9} {'train s':>8} epochs")
    for name, t in trials.items():
        later = [h for h in t["history"] if h["epoch"] > 1]
        secs = sum(h["epoch_time_s"] for h in later)
        steady = sum(h["throughput_img_s"] * h["epoch_time_s"] for h in later) / secs if secs else float("nan")
        print(f"{name:<22} {t['test_acc']:>8.4f} {t['throughput_img_s']:>9.0f} {steady:>10.0f} "
              f"{t['peak_mem_mb']:>9.1f} {t['train_time_s']:>8.2f} {t['epochs_run']}")
EOF

cat >"$WORK/pack.sh" <<'EOF'
# pack.sh N OUTDIR TRIAL...: N copies of the trial command at once, each writing OUTDIR/nN-i.json
n=$1 dir=$2
shift 2
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' TERM INT  # run_step's timeout stops this script: stop the trials too
for ((i = 1; i <= n; i++)); do
    "$@" --seed "$i" --out "$dir/n$n-$i.json" >"$dir/n$n-$i.log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
EOF

cat >"$WORK/packing.py" <<'EOF'
"""Trial JSONs nN-i.json -> packing.json: per N, every trial's steady img/s (epochs 2+), their sum
(aggregate) and the per-trial slowdown against the one trial that ran alone (N = 1)."""
import json
import sys
from pathlib import Path

folder, out = Path(sys.argv[1]), Path(sys.argv[2])


def steady(trial):
    later = [h for h in trial["history"] if h["epoch"] > 1] or trial["history"]
    secs = sum(h["epoch_time_s"] for h in later)
    return sum(h["throughput_img_s"] * h["epoch_time_s"] for h in later) / secs


rows = {}
for n in (1, 2, 4, 8):
    files = sorted(folder.glob(f"n{n}-*.json"))
    if files:
        trials = [json.loads(f.read_text()) for f in files]
        rows[n] = {"trials": len(trials), "per_trial_img_s": [steady(t) for t in trials],
                   "peak_mem_mb": [t["peak_mem_mb"] for t in trials]}
alone = rows[1]["per_trial_img_s"][0] if 1 in rows else float("nan")
print(f"{'N':>2} {'done':>4} {'aggregate img/s':>15} {'per trial img/s':>15} {'slowdown':>8} {'x alone':>7}")
for n, row in rows.items():
    per = sum(row["per_trial_img_s"]) / row["trials"]
    row.update(aggregate_img_s=sum(row["per_trial_img_s"]), slowdown=alone / per,
               speedup=sum(row["per_trial_img_s"]) / alone)
    print(f"{n:>2} {row['trials']:>4} {row['aggregate_img_s']:>15.0f} {per:>15.0f} {row['slowdown']:>8.2f} "
          f"{row['speedup']:>7.2f}")
out.write_text(json.dumps(rows, indent=1) + "\n")
EOF

TRIAL=("$PY" -m study trial --device "$DEVICE" --no-mlflow "${TRIAL_EXTRA[@]}")
PER_TEST=()
"$PY" -c "import pytest_timeout" 2>/dev/null && PER_TEST=(--timeout 60)

# --- steps: one function step_NAME each; STEPS picks them -------------------------------------
step_bench() {
    run_step bench 150 "$PY" -m benchmarks.run --device "$DEVICE" --no-harness "${BENCH_ARGS[@]}" --out "$OUT"
}

step_trials() {
    # the whole-trial targets (benchmarks/README.md): standard training on 50,000 synthetic
    # CIFAR-size images at the bench's batch size, then training img/s and training share of
    # fit's wall clock against the bench step's numbers
    local model name t0 wall walls=()
    for model in resnet18 seed_cnn; do
        name=${model}_synthetic
        t0=$EPOCHREALTIME
        run_step "trial_$name" 90 "${TRIAL[@]}" --dataset synthetic --model "$model" --method standard \
            --epochs "$EPOCHS" --set batch_size="$TRIAL_BATCH" --out "$TRIALS_DIR/$name.json"
        wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
        [[ -e $TRIALS_DIR/$name.json ]] && walls+=("$TRIALS_DIR/$name.json:$wall")
    done
    "$PY" "$WORK/merge_trials.py" "$TRIALS_DIR" "$OUT/trials.json" --print
    local results="" f
    for f in "$OUT"/*-"$(date +%F)".json; do  # the bench step's <gpu>-<date>.json
        [[ -e $f && $(basename "$f") != compile-* ]] && results=$f
    done
    if [[ -z $results || ${#walls[@]} == 0 ]]; then
        echo "=== [trials] no efficiency figures: needs the bench step's results in $OUT (STEPS=bench,trials)"
        SUMMARY+=("trials: efficiency skipped (no bench results or no trial output)")
        return 0
    fi
    run_step trial_efficiency 60 "$PY" -m benchmarks.trial_efficiency --results "$results" "${walls[@]}"
}

step_packing() {
    # N trials share the GPU (an N that times out counts the trials that finished; logs: $WORK/packing)
    local n dir=$WORK/packing
    mkdir -p "$dir"
    for n in 1 2 4 8; do
        run_step "packing_$n" 90 bash "$WORK/pack.sh" "$n" "$dir" "$PY" -m study trial --dataset synthetic \
            --device "$DEVICE" --no-mlflow --model seed_cnn --method standard "${PACK_EXTRA[@]}"
    done
    "$PY" "$WORK/packing.py" "$dir" "$OUT/packing.json"
    tail -n 3 "$dir"/n8-1.log 2>/dev/null
}

step_pytest() {
    # the vgg16 CPU-RSS test takes ~40 s and says nothing about the GPU
    run_step pytest_unit 75 "$PY" -m pytest -q tests/unit -p no:cacheprovider --maxfail 5 "${PER_TEST[@]}" \
        -k "not peak_memory_is_well_below_standard" >"$OUT/pytest_unit.txt" 2>&1
    cat "$OUT/pytest_unit.txt"
}

step_compile() {
    # same file names as the bench step: written aside, then renamed compile-*.json (its table is in this log)
    run_step compile 90 "$PY" -m benchmarks.run --device "$DEVICE" --no-harness --compile "${COMPILE_ARGS[@]}" \
        --out "$WORK/compile"
    for f in "$WORK"/compile/*.json; do
        [[ -e $f ]] && mv "$f" "$OUT/compile-$(basename "$f")"
    done
}

step_fashion() {
    local dir=${FASHION_DIR:-.data/fashion-mnist}
    [[ -d $dir ]] || dir=/usr/share/datasets/fashion-mnist
    local extra=(--jobs 9)
    [[ $SMOKE == 1 ]] && extra=(--jobs 3 --seeds 1 --set width=0.25 --set max_train_samples=256 --set epochs=5)
    run_step fashion 300 "$PY" -m benchmarks.fashion_check --device "$DEVICE" --data-dir "$dir" "${extra[@]}" \
        --out "$OUT"
}

step_sweep() {
    local py=$PY kit=${GPU_KIT:-build/gpu-kit} dir=$WORK/sweep-study cap=90
    [[ $SMOKE == 1 ]] && cap=900  # a CPU smoke run on a busy 2-core machine needs minutes
    if ! "$PY" -c "import ray, optuna, mlflow" 2>/dev/null; then
        if [[ ! -e $kit/install.sh ]]; then
            echo "=== [sweep] SKIPPED: $PY lacks Ray, Optuna or MLflow, and $kit has no kit"
            SUMMARY+=("sweep: skipped (no kit)")
            return 0
        fi
        run_step sweep_install "$cap" env PYTHON="$PY" bash "$kit/install.sh" "$WORK/kit-venv"
        py=$WORK/kit-venv/bin/python
    fi
    local device=cuda gpu=0.25 extra=()
    if [[ $SMOKE == 1 ]]; then
        device=cpu gpu=0
        extra=(--set budget.epochs=2 --set budget.search_epochs=4 --set budget.max_trials=2
               --set fixed.max_train_samples=256 --set budget.max_concurrent=1)
    fi
    run_step sweep $((cap + 110)) "$py" -m study sweep --spec quick --study-dir "$dir" \
        --set 'models=["seed_cnn"]' --set budget.epochs=4 --set budget.search_epochs=16 \
        --set budget.max_trials=4 --set budget.max_concurrent=4 --set budget.seeds=1 \
        --set resources.gpu="$gpu" --set fixed.device="$device" "${extra[@]}" \
        >"$WORK/sweep-console.txt" 2>&1
    cat "$WORK/sweep-console.txt"  # one line per trial, then the report
    cp "$WORK/sweep-console.txt" "$dir/console.txt" 2>/dev/null
    local name  # the bench step's file-name stem: the GPU's name (the host's on the CPU)
    name=$("$PY" -c "import torch; from benchmarks.run import machine_info as m
print(m(torch.device('$device'), '')['name'])" 2>/dev/null)
    [[ -d $dir ]] && tar -czf "$OUT/sweep-${name:-unknown}-$(date +%F).tar.gz" -C "$WORK" \
        --exclude=sweep-study/tune sweep-study
}

main() {
    echo "gpu_check: OUT=$OUT python=$PY device=$DEVICE smoke=$SMOKE deadline=${DEADLINE_S}s steps=$STEPS"

    run_step env 30 bash -c 'nvidia-smi; echo; nproc --all; free -g; "$1" "$2"' _ "$PY" "$WORK/env.py" \
        >"$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"

    local name
    for name in ${STEPS//,/ }; do
        if declare -F "step_$name" >/dev/null; then
            "step_$name"
        else
            echo "=== [$name] UNKNOWN step; defined: $(declare -F | awk '$3 ~ /^step_/ {printf "%s ", substr($3, 6)}')"
            SUMMARY+=("$name: unknown step")
        fi
    done

    echo "=== summary (total $((SECONDS - START))s)"
    printf '  %s\n' "${SUMMARY[@]}"
    ls -l "$OUT"
}

main 2>&1 | tee "$OUT/log.txt"
rm -rf "$WORK"
