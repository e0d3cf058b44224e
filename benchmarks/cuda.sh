#!/usr/bin/env bash
# On a CUDA machine, from the repository root: the GPU tests, then the suite on the GPU.
#   bash benchmarks/cuda.sh [OUT_DIR]        (default benchmarks/results)
# Every phase has a time limit, and the suite rewrites its JSON after each model and M, so a
# short lease still brings back what was measured. Needs torch with CUDA, pytest, hypothesis.
set -u
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/cuda_gpu.txt"
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' \
    | tee -a "$out/cuda_gpu.txt"

echo "== tests/cuda"
timeout -k 5 "${TESTS_S:-300}" $py -m pytest -q -p no:cacheprovider -rs tests/cuda \
    2>&1 | tee "$out/cuda_tests.log"

suite() { timeout -k 5 "$1" $py -m benchmarks.run --device cuda --warmup 3 --repeats 10 "${@:2}"; }
echo "== suite, M = 2: fp32, channels_last, bf16"
suite "${M2_S:-140}" --modalities 2 --options fp32 channels_last bf16 \
    --json "$out/suite_cuda_m2.json" --markdown 2>&1 | tee "$out/suite_cuda_m2.log"
echo "== suite, M = 3, 4: fp32, bf16"
suite "${M34_S:-140}" --modalities 3 4 --options fp32 bf16 \
    --json "$out/suite_cuda_m34.json" --markdown 2>&1 | tee "$out/suite_cuda_m34.log"
echo "== suite, M = 2: torch.compile (compile time excluded; no memory runs)"
suite "${COMPILE_S:-100}" --modalities 2 --options fp32 compile --no-memory \
    --models refinenet-resnet50 pix2pix --json "$out/suite_cuda_compile.json" 2>&1 \
    | tail -n 30
