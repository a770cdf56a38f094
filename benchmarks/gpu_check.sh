#!/usr/bin/env bash
# One device session's GPU checks for issue 12, prepared to run once on a lent GPU machine:
#   OUT=/some/dir bash benchmarks/gpu_check.sh      (the device tool sets $OUT)
# It records the device and CuPy, runs the GPU-marked tests (every GPU kernel against the CPU
# one, the seed op's corpus on the GPU) and the GPU benchmark (ours against torch's cuDNN
# conv2d_input, TFLOP/s and % of the measured GEMM rate). Each step has its own time limit
# and its own output file, so one failing step still leaves the others' results.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
{
    date
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    python -c "import cupy, sys; print('cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())" 2>&1
    python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1
    python -c "from runtime import devices; print(devices.available_devices() if hasattr(devices, 'available_devices') else '')" 2>&1
} > "$OUT/env.txt"
timeout 240 python -m pytest -q -m gpu -p no:cacheprovider tests/gpu > "$OUT/gpu_tests.txt" 2>&1
echo "gpu tests: exit $?" >> "$OUT/summary.txt"
timeout 150 python benchmarks/conv_backprop_input.py --device gpu --quick > "$OUT/gpu_bench.txt" 2>&1
echo "gpu benchmark: exit $?" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
tail -5 "$OUT/gpu_tests.txt"
cat "$OUT/gpu_bench.txt"
