#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the cross-backend parity tests on CUDA and on wgpu (the real
# GPU through Vulkan), a short training run on each, and throughput figures for
# docs/benchmarks.md. Needs the NVIDIA driver; CUDA kernels are compiled at run time by NVRTC
# (libnvrtc from the CUDA toolkit or the nvidia-cuda-nvrtc wheel must be loadable).
#
#   scripts/gpu-check.sh            # everything, ~10 minutes after the build
#   SKIP_WGPU=1 scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
if ! command -v nvcc >/dev/null && [ -z "${CUDARC_CUDA_VERSION:-}" ]; then
  export CUDARC_CUDA_VERSION=13000
fi
out=${OUT:-gpu-check}
mkdir -p "$out"

echo "== parity: CUDA vs flex (every model, logits; a training step for three)"
cargo test --release -p se-cli --no-default-features --features cuda,flex,ndarray --test backends cuda 2>&1 | tee "$out/parity-cuda.txt"
if [ -z "${SKIP_WGPU:-}" ]; then
  echo "== parity: wgpu (default adapter) vs flex"
  SE_DEVICE=default cargo test --release -p se-cli --no-default-features --features wgpu,flex,ndarray --test backends wgpu 2>&1 | tee "$out/parity-wgpu.txt"
fi

backends="cuda"
[ -z "${SKIP_WGPU:-}" ] && backends="cuda wgpu"
for backend in $backends; do
  echo "== $backend: short training run (1 epoch on the embedded MNIST digits)"
  SE_DEVICE=${SE_DEVICE:-default} cargo xtask --backend "$backend" train --epochs 1 \
    --run-dir "$out/train-$backend" 2>&1 | tail -5 | tee "$out/train-$backend.txt"
  echo "== $backend: half precision, 1 epoch"
  precisions="f16"
  [ "$backend" = cuda ] && precisions="f16 bf16"
  for precision in $precisions; do
    SE_DEVICE=${SE_DEVICE:-default} cargo xtask --backend "$backend" train --epochs 1 \
      --precision "$precision" --run-dir "$out/train-$backend-$precision" 2>&1 | tail -3 \
      | tee "$out/train-$backend-$precision.txt"
  done
  echo "== $backend: throughput (images/s), results in $out/bench-$backend/"
  SE_DEVICE=${SE_DEVICE:-default} cargo xtask --backend "$backend" bench \
    --models se_resnet20,resnet20,se_resnet50,resnet50 --out "$out/bench-$backend" 2>&1 \
    | tee "$out/bench-$backend.txt"
done
echo "results in $out/"
