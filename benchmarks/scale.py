"""Scale: one attack step at CIFAR size with V regenerated (never stored); time, memory, FLOP/s.

    python benchmarks/scale.py                                  # CPU: d=3072, n=10, p/(dn)=1,5,10
    python benchmarks/scale.py --n 10 100 --precision highest tf32 bf16 --memory-budget 16GB \\
        --name scale_gpu                                        # GPU

One step = the published attack's update: value and gradient of the kernel-form projector loss
(surrogate ReLU derivative) over a streamed ``RandomFeatures`` whose block size comes from
``--memory-budget`` (:func:`jaxrecon.block_size_for`), plus the SGD-momentum update. Each
configuration runs in a fresh subprocess, so its peak host memory (``ru_maxrss``) is its own; on
GPUs the peak device memory (``memory_stats``) and XLA's compile-time estimate are recorded too.

FLOP/s: the matmul work of a step is ``2 n d p`` per pass over ``V`` (forward, the checkpointed
recomputation unless ``--cache-preactivations``, and the input gradient: 3 or 2 passes) plus
``2 n^2 p`` for the gram and its two gradient products; it is compared with the dense matmul peak
measured in the same run (a square matmul of ``--peak-size``) at the same precision. Each step
also draws ``2 p d`` normals (the block is regenerated for the gradient); the time of one pass of
generation alone is reported as ``rng_s``.

Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

import jaxrecon as jr
from jaxrecon.scale import block_size_for
from jaxrecon.data import project_to_sphere, sphere
from jaxrecon.features.random_features import PRECISIONS

from _common import block, machine, save, timed


def step_flops(d, n, p, cache):
    return 2 * n * d * p * (2 if cache else 3) + 3 * 2 * n * n * p


def measure(d, n, p, precision, budget, steps, cache, seeds=1):
    B = block_size_for(d, n, p, budget, seeds=seeds, cache_preactivations=cache)
    fmap = jr.RandomFeatures(jax.random.key(2), d, p, block_size=B, dtype="float32", precision=precision,
                             cache_preactivations=cache, surrogate_slope=0.02)
    theta = jax.random.normal(jax.random.key(3), (p,), jnp.float32)
    x = sphere(jax.random.key(4), n, d).astype(jnp.float32)
    vg = jax.value_and_grad(lambda x: jr.projector_loss(fmap, theta, x))

    def step(x, m):
        loss, g = vg(x)
        m = 0.9 * m + g
        return project_to_sphere(x - 20.0 * m, d ** 0.5), m, loss

    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(x, jnp.zeros_like(x)).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    est = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) if mem else None
    t0 = time.perf_counter()
    block(compiled(x, jnp.zeros_like(x)))  # first step (also warms caches)
    first_s = time.perf_counter() - t0

    def run(x):
        m = jnp.zeros_like(x)
        for _ in range(steps):
            x, m, loss = compiled(x, m)
        return loss

    step_s = timed(run, x, repeats=2) / steps
    # one pass of V generation alone (what a streamed pass pays before any matmul)
    gen = jax.jit(lambda: jax.lax.map(lambda b: jnp.sum(fmap.rows(b * B, B)), jnp.arange(fmap.n_blocks)).sum())
    block(gen())
    rng_s = timed(gen, repeats=2)
    flops = step_flops(d, n, p, cache)
    out = {"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "precision": precision, "block_size": B,
           "n_blocks": fmap.n_blocks, "memory_budget": budget, "cache_preactivations": cache,
           "compile_s": compile_s, "first_step_s": first_s, "step_s": step_s, "rng_pass_s": rng_s,
           "matmul_flops": flops, "tflops": flops / step_s / 1e12, "xla_memory_estimate_bytes": est,
           "peak_host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "dense_V_bytes": 4 * p * d}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_bytes"] = stats["peak_bytes_in_use"]
    return out


def matmul_peak(size, precision):
    """TFLOP/s of a dense ``size^3`` float32 matmul at ``precision`` (the reference peak)."""
    fm = jr.RandomFeatures(jax.random.key(0), 1, 1, precision=precision)  # reuse its matmul rule
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    f = jax.jit(lambda a: fm._matmul(a, a))
    block(f(a))
    return 2 * size ** 3 / timed(f, a, repeats=5) / 1e12


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=3072)
    ap.add_argument("--n", type=int, nargs="+", default=[10])
    ap.add_argument("--p-over-dn", type=float, nargs="+", default=[1, 5, 10])
    ap.add_argument("--precision", nargs="+", default=["highest"], choices=list(PRECISIONS))
    ap.add_argument("--memory-budget", default="1GB", help="per device, e.g. 1GB (CPU) or 16GB (GPU)")
    ap.add_argument("--cache-preactivations", action="store_true")
    ap.add_argument("--steps", type=int, default=2, help="timed steps (best of 2 runs)")
    ap.add_argument("--peak-size", type=int, default=2048, help="square matmul size for the peak")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    ap.add_argument("--name", default="scale")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one configuration in this (fresh) process
        print("RESULT " + json.dumps(measure(**json.loads(args.child))), flush=True)
        return
    peaks = {prec: matmul_peak(args.peak_size, prec) for prec in args.precision}
    print("dense matmul peak (TFLOP/s): " + ", ".join(f"{k} {v:.2f}" for k, v in peaks.items()), flush=True)
    rows = []
    for n in args.n:
        for r in args.p_over_dn:
            for prec in args.precision:
                p = int(round(r * args.d * n))
                spec = dict(d=args.d, n=n, p=p, precision=prec, budget=args.memory_budget, steps=args.steps,
                            cache=args.cache_preactivations)
                try:
                    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                                         text=True, timeout=args.timeout, cwd=os.path.dirname(os.path.abspath(__file__)))
                except subprocess.TimeoutExpired:
                    print(f"n={n} p={p} {prec}: timed out after {args.timeout:.0f} s", flush=True)
                    rows.append(dict(spec, error="timeout"))
                    continue
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if not line:
                    print(f"n={n} p={p} {prec}: failed\n{out.stderr[-2000:]}", flush=True)
                    rows.append(dict(spec, error=out.stderr[-2000:]))
                    continue
                row = json.loads(line[0][7:])
                row["fraction_of_peak"] = row["tflops"] / peaks[prec]
                rows.append(row)
                mem = row.get("peak_device_bytes", row["peak_host_rss_bytes"])
                print(f"n={n:>4} p={p:>8} ({r:g}dn) {prec:>8} B={row['block_size']:>6}: step {row['step_s']:.3f} s "
                      f"(first {row['first_step_s']:.2f}, compile {row['compile_s']:.1f})  {row['tflops']:.2f} TFLOP/s "
                      f"= {100 * row['fraction_of_peak']:.0f}% of peak  rng pass {row['rng_pass_s']:.3f} s  "
                      f"peak mem {mem / 1e9:.2f} GB (dense V {row['dense_V_bytes'] / 1e9:.1f} GB)", flush=True)
                save(args.name, {"machine": machine(), "args": vars(args), "peaks_tflops": peaks, "rows": rows})
    path = save(args.name, {"machine": machine(), "args": vars(args), "peaks_tflops": peaks, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
