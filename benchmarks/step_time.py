"""Per-step time of the published attack: dense vs streamed V, 1 seed vs 16 vmapped seeds.

    python benchmarks/step_time.py                 # d=100, n=20, p=20000, float32, CPU
    python benchmarks/step_time.py --steps 50 --block-size 4096

One "step" is one SGD-momentum update with the projector-loss gradient (the published method,
``tol=0`` so no seed stops early), timed inside the compiled ``lax.while_loop`` (no Python per
step). Compile time is measured separately (ahead-of-time ``lower().compile()``). Results go to
``benchmarks/results/step_time.json``; ``benchmarks/RESULTS.md`` records them by hand.
"""

from __future__ import annotations

import argparse
import time

import jax

import jaxrecon as jr
from jaxrecon.attack import advance, attack_target, init_state, make_solver, method_config

from _common import block, machine, save, timed


def measure(d, n, p, seeds, block_size, steps, method="published"):
    data = jr.synthetic(jax.random.key(1), n, d, dtype="float32")
    fmap = jr.RandomFeatures(jax.random.key(2), d, p, block_size=block_size, dtype="float32")
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    cfg = method_config(method, tol=0.0)
    solver = make_solver(target, n, cfg, total_steps=10 * steps)
    tgt = attack_target(target, cfg, n=n)
    keys = jax.random.split(jax.random.key(3), seeds)
    state = jax.jit(jax.vmap(lambda k: init_state(solver, k, tgt)))(keys)
    run = jax.jit(jax.vmap(lambda t, s, m: advance(solver, t, s, m), in_axes=(None, 0, None)))
    t0 = time.perf_counter()
    compiled = run.lower(tgt, state, steps).compile()
    compile_s = time.perf_counter() - t0
    block(compiled(tgt, state, 1))  # warm-up
    seconds = timed(compiled, tgt, state, steps)
    return {"d": d, "n": n, "p": p, "seeds": seeds, "block_size": block_size, "steps": steps,
            "compile_s": compile_s, "ms_per_step": 1e3 * seconds / steps,
            "ms_per_step_per_seed": 1e3 * seconds / steps / seeds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--p", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--block-size", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    rows = []
    for block_size in (None, args.block_size):
        for seeds in args.seeds:
            r = measure(args.d, args.n, args.p, seeds, block_size, args.steps)
            rows.append(r)
            mode = "dense" if block_size is None else f"streamed(B={block_size})"
            print(f"{mode:>20} seeds={seeds:>3}  {r['ms_per_step']:8.2f} ms/step  "
                  f"{r['ms_per_step_per_seed']:7.2f} ms/step/seed  compile {r['compile_s']:.1f} s", flush=True)
    path = save("step_time", {"machine": machine(), "args": vars(args), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
