#!/usr/bin/env bash
# The GPU benchmarks of docs/benchmarks.md in one run, for a session that has a GPU for a few minutes:
# the model (fp32/bf16, channels-last or not, compiled or not), one competition frame through inference, and
# configs/nafnet.yaml's real training loop on synthetic competition-size pairs (samples/s, where a step's time
# goes, time to the first step, validation's share of the wall time).
#
#   bash scripts/bench_gpu.sh OUT_DIR
#
# A dry run on a CPU, without the compiled runs: BENCH_DEVICE=cpu BENCH_SIZE="256 384" BENCH_PAIRS=3 BENCH_STEPS=6
# BENCH_QUICK=1.
#
# Each part writes its table to OUT_DIR as it finishes (seven files), so a run cut short still leaves what it
# measured. The compiled model is timed forward only: bench_train's compiled runs cover the training step.
set -uo pipefail
out=${1:?usage: bash scripts/bench_gpu.sh OUT_DIR}
size=${BENCH_SIZE:-3472 4624}
pairs=${BENCH_PAIRS:-6}
steps=${BENCH_STEPS:-60}
device=${BENCH_DEVICE:-cuda}
quick=(); [ -z "${BENCH_QUICK:-}" ] || quick=(--quick --no-frame)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
run() {  # run NAME COMMAND...: log everything, keep going on failure
  local name=$1; shift
  echo "== $name: $*" | tee -a "$out/log.txt"
  local start=$SECONDS
  "$@" >> "$out/$name.txt" 2>&1
  echo "   exit $? after $((SECONDS - start)) s" | tee -a "$out/log.txt"
  grep -v -e '^epoch ' -e 'it/s' "$out/$name.txt" | tail -n 30
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
  df -h /dev/shm | tail -n 1; nproc; } | tee -a "$out/log.txt"

# Training data: synthetic competition-size pairs in the organisers' layout, made while the model is timed.
data=$(mktemp -d)/zte
python3 -m denoise.dataset.synth --out "$data" --train "$pairs" --test 1 --val 1 --train-size $size \
  > "$out/synth.log" 2>&1 &
synth=$!

# A loader worker keeps about 200 MB in /dev/shm: without that much, load in the main process.
shm_mb=$(df -m /dev/shm | awk 'NR == 2 {print $4}')
workers=6; [ "${shm_mb:-0}" -ge 2048 ] || workers=0
train_args=(--configs configs/nafnet.yaml --steps "$steps" "data.root=$data/train" data.val_count=1
            "data.num_workers=$workers" "train.device=$device")

run model python3 scripts/bench_model.py --device "$device" --configs configs/nafnet.yaml --repeats 10 "${quick[@]}"
run infer python3 scripts/bench_infer.py --device "$device" --size $size
run infer python3 scripts/bench_infer.py --device "$device" --size $size infer.precision=bf16
wait $synth; echo "synth exit $?: $(tail -n 1 "$out/synth.log")" | tee -a "$out/log.txt"; rm -f "$out/synth.log"
run train python3 scripts/bench_train.py "${train_args[@]}" --variants fp32 bf16 fp32+sync bf16+sync
run train_val python3 scripts/bench_train.py "${train_args[@]}" --epochs-with-val 2 --variants bf16
[ -z "${BENCH_QUICK:-}" ] || exit 0  # compiling takes minutes on a CPU
run train_compile python3 scripts/bench_train.py "${train_args[@]}" --variants bf16+compile fp32+compile
run model_compile python3 scripts/bench_model.py --device "$device" --configs configs/nafnet.yaml --repeats 10 \
  --compile --no-frame --no-train
