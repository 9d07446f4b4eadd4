"""Time and memory of the network kernel ``gram(x, x)``: matrix-free vs materialised, as ``p`` grows.

    python benchmarks/network_features.py            # CPU-sized, a few minutes
    python benchmarks/network_features.py --quick    # two sizes per model

For the two-layer head (``p = width * k``), the paper's ResNet head (``p = 49 * width``) and all
of the ResNet's parameters it
compiles ``gram(x, x)`` (and the attack's ``value_and_grad`` of the projector loss) for both
``gram_mode``s and reports the best-of-3 wall-clock and XLA's temporary buffer size for the
compiled program (``memory_analysis().temp_size_in_bytes``: the peak working memory beyond the
arguments, i.e. beyond the parameters and inputs). The materialised mode holds the ``m x p``
Jacobian (``m = n * k`` rows); the matrix-free mode holds the activations plus ``row_batch``
parameter-sized vectors. Results go to ``benchmarks/results/network_features.json``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from flax import nnx

import jaxrecon as jr
from jaxrecon.features.network import NetworkFeatures
from jaxrecon.models.resnet import ResNet
from jaxrecon.models.train import split_model
from jaxrecon.models.two_layer import TwoLayer

from _common import machine, save


def timed(fn, *args, repeats=3):
    """Best-of-``repeats`` wall-clock seconds of ``fn(*args)`` (results blocked on)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def temp_bytes(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    mem = compiled.memory_analysis()
    return compiled, (int(mem.temp_size_in_bytes) if mem is not None else -1)


def measure(model_name, model, d, n, k, subset="head"):
    apply, params = split_model(model)
    x = jax.random.normal(jax.random.key(1), (n, d), jnp.float32)
    out = []
    for mode in ("materialise", "matrix_free"):
        fmap = NetworkFeatures(apply, params, d, k, subset, gram_mode=mode)
        theta = jax.random.normal(jax.random.key(2), (fmap.p,), jnp.float32)
        g, g_mem = temp_bytes(lambda f, xx: f.gram(xx, xx), fmap, x)
        vg = lambda f, xx: jax.value_and_grad(lambda z: jr.projector_loss(f, theta, z))(xx)
        a, a_mem = temp_bytes(vg, fmap, x)
        row = {"model": model_name, "subset": subset, "mode": mode, "d": d, "n": n, "k": k, "m": n * k, "p": fmap.p,
               "param_bytes": int(sum(l.nbytes for l in jax.tree_util.tree_leaves(params))),
               "gram_s": timed(g, fmap, x), "gram_temp_bytes": g_mem,
               "loss_grad_s": timed(a, fmap, x), "loss_grad_temp_bytes": a_mem}
        out.append(row)
        print(f"{model_name:9s} {subset:4s} {mode:11s} m={n * k:4d} p={fmap.p:8d}  gram {row['gram_s'] * 1e3:8.2f} ms "
              f"temp {g_mem / 2**20:8.2f} MiB | loss+grad {row['loss_grad_s'] * 1e3:8.2f} ms "
              f"temp {a_mem / 2**20:8.2f} MiB | params {row['param_bytes'] / 2**20:7.2f} MiB", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    widths = [250, 2500] if args.quick else [250, 2500, 25000]
    for w in widths:  # two-layer head: d=100, n=16, k=10 -> m=160, p = 10 * width
        rows += measure("two_layer", TwoLayer(100, w, 10, rngs=nnx.Rngs(0)), 100, 16, 10)
    widths = [8, 32] if args.quick else [8, 32, 128]
    for w in widths:  # ResNet head on 3x32x32 inputs: n=8, p = 49 * width
        rows += measure("resnet", ResNet(w, rngs=nnx.Rngs(0)), 3072, 8, 1)
    for w in widths[:-1]:  # ResNet, all parameters: p ~ 2352 w + 72 w^2 (the Jacobian is m x p)
        rows += measure("resnet", ResNet(w, rngs=nnx.Rngs(0)), 3072, 8, 1, subset="all")
    path = save("network_features", {"machine": machine(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
