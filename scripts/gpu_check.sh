#!/usr/bin/env bash
# The first thing to run when a GPU is available: everything a GPU must confirm, in about
# 8 minutes on one card, results into benchmarks/results/ (and $OUT when that is set).
#
#   bash scripts/gpu_check.sh                 # from the repository root, on the GPU machine
#
# 1. precision: what "auto" picks on this card, and auto/bf16/fp16 against fp32
#    (benchmarks/precision_check.py)
# 2. throughput on CUDA, quick plan (benchmarks/throughput.py --quick)
# 3. torchrun with one process on CUDA (cake-mini run digits, smoke)
# 4. FashionMNIST at default size, one seed: the noise row and CAKE with the flip/shift
#    teacher (benchmarks/fashion_mnist.py; the authors' RandAugment teacher is CPU-bound)
# 5. chapter 7's pipeline (ResNet-34 -> ResNet-18) at a reduced budget on stand-in data
# 6. the tests that only run with CUDA
#
# Each step has its own time limit and the script goes on after a failure; the summary
# lists what passed. Needs torch, torchvision, matplotlib, scikit-learn, tqdm (the GPU
# image has them); cake_mini runs from this checkout (PYTHONPATH). FashionMNIST comes from
# /usr/share/datasets/fashion-mnist, or from .gpu-data/fashion-mnist in the checkout
# (copy the four IDX .gz files there and carry that folder to a machine without them).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .gpu-data/fashion-mnist ]; then
    export CAKE_MINI_DATA="$PWD/.gpu-data"
fi
RESULTS=benchmarks/results
mkdir -p "$RESULTS" /tmp/gpu-check
SUMMARY=()

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name (at most ${limit}s)"
    local t0=$SECONDS
    if timeout "$limit" "$@" 2>&1 | tee "/tmp/gpu-check/$name.log" | tail -n 25; then
        SUMMARY+=("ok    $name ($((SECONDS - t0)) s)")
    else
        SUMMARY+=("FAIL  $name ($((SECONDS - t0)) s): see /tmp/gpu-check/$name.log")
    fi
}

"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0),
      "capability", torch.cuda.get_device_capability(0))
PY
step precision 90 "$PY" benchmarks/precision_check.py --device cuda
step throughput 150 "$PY" benchmarks/throughput.py --device cuda --quick
step torchrun-1-cuda 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m cake_mini run digits \
    --size smoke --device cuda --out /tmp/gpu-check/digits --no-progress
step fashion-mnist-default 150 "$PY" benchmarks/fashion_mnist.py --size default --seeds 0 \
    --rows noise cake-pad-teacher --no-curve --device cuda
step cifar10-stand-in 60 "$PY" -m cake_mini run cifar10-resnet --size smoke --stand-in --device cuda \
    --out /tmp/gpu-check/c10 --no-progress
step cuda-tests 60 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_blackbox.py tests/test_synthesis.py \
    tests/test_distill.py -k "cuda or fp16 or precision"

printf '%s\n' "${SUMMARY[@]}" | tee /tmp/gpu-check/summary.txt
if [ -n "${OUT:-}" ]; then
    cp "$RESULTS"/precision-*.json "$RESULTS"/throughput-*.json "$RESULTS"/fashion-mnist-default-*.json "$OUT"/ 2>/dev/null
    cp /tmp/gpu-check/summary.txt /tmp/gpu-check/c10/results.json "$OUT"/ 2>/dev/null
    tar czf "$OUT/logs.tgz" -C /tmp/gpu-check --exclude='*.pt' --exclude=synthesis --exclude=distill . 2>/dev/null
fi
! grep -q FAIL /tmp/gpu-check/summary.txt
