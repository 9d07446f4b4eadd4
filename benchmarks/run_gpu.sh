#!/usr/bin/env bash
# The GPU session of benchmarks/RESULTS.md ("Scale"): run from the repository root on a machine with
# one NVIDIA GPU whose Python already has jax[cuda], flax, optax, scikit-image, scikit-learn, tqdm.
# Results go to ${OUT:-runs/gpu}.
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
pip install --no-deps --no-build-isolation -e . -q 2>&1 | tail -1  # no internet: no build isolation
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works even where the install cannot
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python -c "import jax; print('jax', jax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
# 1. One attack step at CIFAR size (d=3072), n=100, p/(dn) = 1, 5, 10, three matmul precisions;
#    then the largest size with cached pre-activations, and n=10.
(cd benchmarks && timeout 230 python scale.py --n 100 --p-over-dn 1 5 10 --precision highest tf32 bf16 \
    --memory-budget 16GB --steps 3 --peak-size 8192 --timeout 90 --name scale_gpu)
(cd benchmarks && timeout 60 python scale.py --n 100 --p-over-dn 10 --precision highest tf32 \
    --memory-budget 16GB --steps 3 --peak-size 8192 --timeout 50 --cache-preactivations --name scale_gpu_cached)
cp benchmarks/results/scale_gpu*.json "$OUT/"
# 2. Paper Fig 1 (right) at full size on bundled photographs: d=3072, n=96, p=10dn (2.95M features),
#    published method, TF32 matmuls, V streamed under a 16 GB budget, 800 steps.
timeout 400 python -m jaxrecon.cli reconstruct --data photos32 --n 96 --p-over-dn 10 --seeds 1 --method published \
    --precision tf32 --memory-budget 16GB --steps 800 --chunk 100 --out "$OUT/fig1_photos32" --quiet
ls -la "$OUT" "$OUT/fig1_photos32" 2>/dev/null
