#!/usr/bin/env bash
# The control path's checks on a GPU, in one go, for a person with one (about 30-40 minutes on
# an H100/H200, most of it the 100k-step run). Writes under benchmarks/results/ and
# outputs/gpu_check/; commit the results with the machine they name.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
export GEMPO_TEST_DEVICE=cuda

# 1. exact resume, no read-back inside an update or an action, compiled (CUDA graphs) = eager
python -m pytest -q -p no:cacheprovider tests/control/test_train.py -k resumed
python -m pytest -q -p no:cacheprovider tests/control/test_compile.py tests/control/test_sync_free.py

# 2. operators and read-backs per update and action, eager and CUDA-graphed
python benchmarks/control_ops.py --device cuda --label "H-class GPU, eager"
python benchmarks/control_ops.py --device cuda --compile reduce-overhead --label "H-class GPU, reduce-overhead"

# 3. env steps/s with learning at the reference settings, eager vs graphed, next to SAC
python benchmarks/control_throughput.py --device cuda --compile reduce-overhead --steps 2000 --reference-steps 2000

# 4. a 100k-step Walker2d run at the reference settings with its learning curve
python -m control.train env=walker2d agent=gempo total_steps=100000 device=cuda compile=reduce-overhead overwrite=true hydra.run.dir=outputs/gpu_check/walker2d
cp outputs/gpu_check/walker2d/learning_curve.png docs/figures/gpu_check_walker2d.png
