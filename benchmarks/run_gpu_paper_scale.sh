#!/usr/bin/env bash
# The GPU check of the issue "Paper scale" (benchmarks/RESULTS.md): one prepared script, under
# 8 minutes, run from the repository root on one NVIDIA H100/H200 whose Python already has
# jax[cuda], flax, optax, scikit-image, scikit-learn, tqdm. Not run yet: no GPU was lent to it.
#   1. Fig 1 right at full size: photos32, n = 96, p = 10dn (2.95M features), adam-lm-split, V stored
#      (36 GB, plus the first stage's copy of 5dn rows, 18 GB: an explicit budget, since the auto
#      policy's half of an H100 would stream V, which the split start cannot use). 290 s, then
#      SIGTERM: the run saves what it has (per-image errors in summary.json, recon.png).
#   2. The Fig 1 left curve (p/(dn) = 1e-4 ... 10, n = 96, one seed): as many points as fit in
#      what is left; points already done are read back on a rerun.
# SMOKE=1 runs the same commands at a size a 2-core CPU finishes in about two minutes.
# Results go to ${OUT:-runs/gpu_paper_scale}.
set -uo pipefail
OUT=${OUT:-runs/gpu_paper_scale}
BUDGET=${BUDGET:-70GB}
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
    DATA=photos16 N=4 BUDGET=2GB RIGHT_S=120 LEFT_S=60 RATIOS=0.1,10
else
    DATA=photos32 N=96 RIGHT_S=290 LEFT_S=150 RATIOS=1e-4,1e-3,1e-2,0.1,0.5,1,2,5,10
    pip install --no-deps --no-build-isolation -e . -q 2>&1 | tail -1  # no internet: no build isolation
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # works even where the install cannot
python -c "import jax, jaxrecon; print('jax', jax.__version__, jax.devices(), 'jaxrecon', jaxrecon.__version__)" \
    | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
timeout -k 20 "$RIGHT_S" python -m jaxrecon.cli reconstruct --data "$DATA" --n "$N" --p-over-dn 10 --seeds 1 \
    --method adam-lm-split --memory-budget "$BUDGET" --chunk 20 --out "$OUT/fig1_right" 2>&1 \
    | tail -n 40 > "$OUT/fig1_right.log"
echo "fig1 right: $(( $(date +%s) - t0 )) s, exit ${PIPESTATUS[0]}" | tee -a "$OUT/times.txt"
t1=$(date +%s)
timeout -k 20 "$LEFT_S" python experiments/fig1_cifar.py --data "$DATA" --n "$N" --seeds 1 --ratios "$RATIOS" \
    --memory-budget "$BUDGET" --out "$OUT/fig1_left" 2>&1 | tail -n 40 > "$OUT/fig1_left.log"
echo "fig1 left: $(( $(date +%s) - t1 )) s, exit ${PIPESTATUS[0]}" | tee -a "$OUT/times.txt"
python - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
s = out / "fig1_right" / "summary.json"
if s.exists():
    r = json.loads(s.read_text())
    err = r["images"]["per_seed"][0]["error"]
    print(f"fig1 right: {sum(e <= 1e-3 for e in err)}/{len(err)} images at error <= 1e-3, "
          f"attack {r['results'][0]['seconds']:.0f} s, status {r['results'][0]['status']}, {r['versions']['device']}")
else:
    print("fig1 right: no summary.json")
done = sorted(p.parent.name for p in (out / "fig1_left").glob("r*/summary.json"))
print(f"fig1 left: points done {done}")
EOF
ls -la "$OUT" "$OUT/fig1_right" 2>/dev/null
