"""Cost of one Levenberg-Marquardt direction of ``adam-lm``: closed-form J^T J vs autodiff.

    python benchmarks/lm_step.py                 # d=100, n=20, p = 10dn, float32, 30 CG iterations

Times ``jaxrecon.attack.lm.lm_direction`` (linearise the residual, set up the row-scaled system,
30 preconditioned CG iterations) for a dense random-features map, (a) with the closed form of
:meth:`RandomFeatures.residual_linearization` and (b) with it disabled, so that
``jax.linearize`` / ``jax.linear_transpose`` of the residual are used; same inputs, one process.
Records compile and run seconds (best of 5) and the relative difference of the two directions.

``--streamed B`` times the same for V streamed in blocks of ``B`` rows (closed form summed over
blocks, two passes per product, vs autodiff). ``--converge`` runs LM steps until the loss is below
``1e-12`` (at most ``--max-steps``) for every ``--cg-tols`` x ``--cg-iters-list`` setting, from each
of ``--starts``: ``near`` (training set + 0.02 noise), ``far`` (+ ``--far-noise``), ``adam`` (the
iterate after ``--adam-steps`` steps of ``adam``). Per setting: steps, CG iterations, passes over
``V`` (per step: 5 set-up, 2 per CG iteration, 1 for the trial loss), seconds and final loss.

    python benchmarks/lm_step.py --d 768 --n 10 --converge --skip-direction --name lm_cg/d768_n10

``--attack-seeds K`` runs the whole ``adam-lm`` attack (stall actions included) per setting.

``--split --streamed B`` compares the split start (``adam-lm-split``) on V stored and V streamed in
blocks of ``B`` rows: one LM direction on the first stage's even target (the first
``--split-features * d * n`` features, ``features/even.py`` against ``features/even_streamed.py``;
the plain features of the same prefix for reference), and ``--split-runs`` whole attacks per layout (``jr.reconstruct``, compiled once per layout, keys
100, 101, ...; the layouts alternate, and swap order each run, on a loaded machine): wall and
process CPU seconds (compile excluded), steps, seconds per step, status and worst row error.

    python benchmarks/lm_step.py --d 40 --n 20 --streamed 2048 --split --skip-direction --name split_streamed
"""

from __future__ import annotations

import argparse
import importlib
import time

import jax
import jax.numpy as jnp

import jaxrecon as jr

from _common import block, machine, save, timed

R = importlib.import_module("jaxrecon.attack.lm")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--p-over-dn", type=float, default=10)
    ap.add_argument("--cg-iters", type=int, default=30)
    ap.add_argument("--streamed", type=int, default=None, help="also time V streamed in blocks of this many rows")
    ap.add_argument("--converge", action="store_true", help="also time LM convergence, fixed vs adaptive CG")
    ap.add_argument("--skip-direction", action="store_true", help="skip the closed form vs autodiff timing")
    ap.add_argument("--cg-tols", default="0,0.1,0.3", help="comma-separated cg_tol values for --converge")
    ap.add_argument("--cg-iters-list", default="30,15", help="comma-separated cg_iters values for --converge")
    ap.add_argument("--starts", default="near,far", help="comma-separated: near, far, adam")
    ap.add_argument("--far-noise", type=float, default=0.3)
    ap.add_argument("--adam-steps", type=int, default=200)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=1, help="start draws per --starts kind")
    ap.add_argument("--first-seed", type=int, default=0, help="the first start draw's index")
    ap.add_argument("--variants", default="plain", help="comma-separated: plain, warm, ew2 (see _converge)")
    ap.add_argument("--damping", type=float, default=1e-3, help="initial LM damping for --converge")
    ap.add_argument("--attack-seeds", type=int, default=0,
                    help="also run the whole adam-lm attack per (cg_iters, cg_tol) setting for this many seeds")
    ap.add_argument("--attack-steps", type=int, default=3000)
    ap.add_argument("--split", action="store_true", help="compare adam-lm-split on V stored and streamed (--streamed B)")
    ap.add_argument("--split-runs", type=int, default=2, help="whole adam-lm-split attacks per layout for --split")
    ap.add_argument("--split-features", type=float, default=5.0,
                    help="the first stage's features / (d n) for --split's direction timing (adam-lm-split: 5)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="lm_step", help="results/NAME.json")
    args = ap.parse_args()
    if args.split and args.streamed is None:
        ap.error("--split: needs --streamed B (the block size of the streamed V to compare)")
    p = int(args.p_over_dn * args.d * args.n)
    data = jr.synthetic(jax.random.key(1), args.n, args.d)
    fmap = jr.RandomFeatures(jax.random.key(2), args.d, p).prepare()
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape)
    out = {}
    maps = {"": fmap} if args.streamed is None else {"": fmap, "streamed_": fmap.replace(V=None, block_size=args.streamed)}
    for prefix, fm in ({} if args.skip_direction else maps).items():
        tgt = jr.Target(fm, target.theta)
        for name in ("closed_form", "autodiff"):
            out[prefix + name] = _time_direction(tgt, x, args, autodiff=name == "autodiff")
            print(f"{prefix + name:>22}: compile+first run {out[prefix + name]['compile_s']:.2f} s, "
                  f"run {out[prefix + name]['run_s'] * 1e3:.1f} ms", flush=True)
        a, b = out[prefix + "closed_form"].pop("direction"), out[prefix + "autodiff"].pop("direction")
        rel = float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
        ratio = out[prefix + "autodiff"]["run_s"] / out[prefix + "closed_form"]["run_s"]
        out[prefix + "speedup"], out[prefix + "relative_difference"] = ratio, rel
        print(f"{prefix}autodiff / closed form: {ratio:.2f}x run time; directions differ by {rel:.1e} (relative)")
    if args.converge:
        out["converge"] = _converge_grid(target, data, args)
    if args.attack_seeds:
        out["attack"] = _attack_grid(target, data, args)
    if args.split:
        out["split"] = _split_compare(target, data, x, args)
    path = save(args.name, {"machine": machine(), "args": vars(args), "results": out,
                            "speedup": out.get("speedup"), "relative_difference": out.get("relative_difference")})
    print(f"wrote {path}")


def _start(name: str, target, data, args, seed: int):
    key = jax.random.fold_in(jax.random.key(4), seed)
    if name == "near":
        return data.x + 0.02 * jax.random.normal(key, data.x.shape)
    if name == "far":
        return data.x + args.far_noise * jax.random.normal(key, data.x.shape)
    if name == "adam":
        return jr.reconstruct(target, key, args.n, method="adam", steps=args.adam_steps).x_hat
    raise ValueError(f"start must be one of near, far, adam; got {name!r}")


def _converge_grid(target, data, args) -> dict:
    """:func:`_converge` for every start (``--seeds`` draws each), variant and (cg_tol, cg_iters)."""
    out = {}
    for start in args.starts.split(","):
        out[start] = {"start_loss": [], "settings": []}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            x0 = _start(start, target, data, args, seed)
            loss0 = float(jnp.sum(R.projector_residual(target.fmap, target.theta, x0) ** 2))
            out[start]["start_loss"].append(loss0)
            print(f"start {start} seed {seed}: loss {loss0:.2e}", flush=True)
            for variant in args.variants.split(","):
                for iters in (int(v) for v in args.cg_iters_list.split(",")):
                    for tol in (float(v) for v in args.cg_tols.split(",")):
                        if variant == "ew2" and tol == 0:
                            continue
                        r = _converge(target, x0, iters, tol, args.max_steps, damping=args.damping, variant=variant)
                        out[start]["settings"].append(dict(r, seed=seed))
                        print(f"  {variant:>5} cg_iters={iters:>3} cg_tol={tol:<4}: {r['steps']:>3} steps "
                              f"({r['rejected']} rejected), {r['cg_iters_total']:>4} CG its, {r['passes']:>5} passes, "
                              f"{r['seconds']:7.1f} s, loss {r['loss']:.2e}", flush=True)
    return out


def _attack_grid(target, data, args) -> list:
    """The whole ``adam-lm`` attack (stall actions included), one seed at a time (a vmapped batch
    would run every CG loop to the slowest seed's count), per (cg_iters, cg_tol) setting: status,
    steps, stalls, worst row error and seconds (compile excluded)."""
    rows = []
    for iters in (int(v) for v in args.cg_iters_list.split(",")):
        for tol in (float(v) for v in args.cg_tols.split(",")):
            m = jr.attack.method_config("adam-lm", cg_iters=iters, cg_tol=tol)
            run = jax.jit(lambda k: jr.reconstruct(target, k, args.n, method=m, steps=args.attack_steps))
            block(run(jax.random.key(100)))  # compile
            for seed in range(args.attack_seeds):
                t0 = time.perf_counter()
                res = block(run(jax.random.key(100 + seed)))
                row = {"cg_iters": iters, "cg_tol": tol, "seed": seed, "seconds": time.perf_counter() - t0,
                       "status": jr.attack.Status(int(res.status)).name, "steps": int(res.steps),
                       "stalls": int(res.stalls),
                       "loss": float(res.loss), "error_sign": float(jnp.max(jr.match(data.x, res.x_hat).error_sign))}
                rows.append(row)
                print(f"  attack cg_iters={iters:>3} cg_tol={tol:<4} seed {seed}: status {row['status']}, "
                      f"{row['steps']} steps, {row['stalls']} stalls, error {row['error_sign']:.1e}, "
                      f"{row['seconds']:.1f} s", flush=True)
    return rows


def _split_compare(target, data, x, args) -> dict:
    """``adam-lm-split`` on V stored and streamed (``--split`` in the module docstring)."""
    from jaxrecon.attack import split as S

    maps = {"stored": target.fmap, "streamed": target.fmap.replace(V=None, block_size=args.streamed)}
    rows = S.split_rows(target.fmap.p, args.d, args.n, args.split_features)
    out = {"first_stage_rows": rows, "block_size": args.streamed, "direction": {}, "attack": []}
    for name, fm in maps.items():
        prefix = S.prefix_target(jr.Target(fm, target.theta), rows)
        for problem, tgt in (("even", jax.jit(lambda t: S.split_problem(t).even)(prefix)), ("plain", prefix)):
            r = _time_direction(tgt, x, args, autodiff=False)
            r.pop("direction")
            out["direction"][f"{problem}_{name}"] = r
            print(f"first {rows} features, {problem:>5} {name:>8}: one LM direction ({args.cg_iters} CG) "
                  f"{r['run_s'] * 1e3:.1f} ms (compile+first {r['compile_s']:.1f} s)", flush=True)
    run = jax.jit(lambda t, k: jr.reconstruct(t, k, args.n, method="adam-lm-split", steps=args.attack_steps))
    tgts = {name: jr.Target(fm, target.theta) for name, fm in maps.items()}
    for name in maps:
        t0 = time.perf_counter()
        block(run(tgts[name], jax.random.key(99)))
        print(f"adam-lm-split {name}: compile + first run {time.perf_counter() - t0:.1f} s", flush=True)
    for i in range(args.split_runs):
        for name in (list(maps) if i % 2 == 0 else list(maps)[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            res = block(run(tgts[name], jax.random.key(100 + i)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            row = {"layout": name, "key": 100 + i, "seconds": wall, "cpu_seconds": cpu, "steps": int(res.steps),
                   "seconds_per_step": wall / max(int(res.steps), 1), "status": jr.attack.Status(int(res.status)).name,
                   "loss": float(res.loss), "error_sign": float(jr.match(data.x, res.x_hat).error_sign)}
            out["attack"].append(row)
            print(f"adam-lm-split {name:>8} key {100 + i}: {row['status']}, {row['steps']} steps, {wall:.1f} s "
                  f"({cpu:.1f} s CPU, {row['seconds_per_step'] * 1e3:.1f} ms/step), error {row['error_sign']:.1e}",
                  flush=True)
    return out


def _time_direction(target, x, args, autodiff: bool) -> dict:
    """Compile and run seconds of one LM direction (closed form, or autodiff with it switched off)."""
    closed_form = jr.RandomFeatures.residual_linearization
    if autodiff:
        jr.RandomFeatures.residual_linearization = lambda self, theta, x, jitter=None: None
    try:
        f = jax.jit(lambda t, xx: R.lm_direction(t, xx, jnp.float32(1e-3), args.cg_iters)[0])
        t0 = time.perf_counter()
        direction = block(f(target, x))
        compile_s = time.perf_counter() - t0
        run_s = timed(f, target, x, repeats=args.repeats)
    finally:
        jr.RandomFeatures.residual_linearization = closed_form
    return {"compile_s": compile_s, "run_s": run_s, "direction": direction}


def _variant_step(cg_iters: int, tgt, x, damping, x0, eta, ew1: bool):
    """An LM step as :meth:`LMPhase.step_counted` with a CG start ``x0`` and a given forcing term
    (``ew1``: ``min(eta, |r|)`` as ``cg_tol``; else ``eta`` itself), also returning the direction."""
    tgt = R.full_precision(tgt)
    s = R.lm_system(tgt, x, damping)
    tol = jnp.minimum(eta, jnp.sqrt(s.loss)) if ew1 else eta
    delta, k = R.cg_solve(lambda u: s.matvec(u) + s.mu * s.D * u, -s.grad, lambda u: u / s.D, tol, cg_iters, x0)
    r_new = R.projector_residual(tgt.fmap, tgt.theta, x + delta)
    loss_new = jnp.sum(r_new * r_new)
    accept = jnp.isfinite(loss_new) & (loss_new < s.loss)
    damping_next = jnp.clip(jnp.where(accept, damping / 3.0, damping * 4.0), 1e-12, 1e6)
    return jnp.where(accept, x + delta, x), damping_next.astype(damping.dtype), s.loss, k, delta


def _converge(target, x, cg_iters: int, cg_tol: float, max_steps: int = 40, tol: float = 1e-12,
              damping: float = 1e-3, variant: str = "plain") -> dict:
    """LM steps (one compiled step, host loop) until the residual loss is below ``tol``.

    Variants: ``plain`` (:meth:`LMPhase.step_counted`, the library's step), ``warm`` (CG started
    at the previous direction: one more product per step), ``ew2`` (Eisenstat-Walker's second
    forcing term ``min(cg_tol, max(0.9 loss_k / loss_k-1, 0.9 eta_k-1^2))``). Returns steps, rejected
    steps, CG iterations, ``(CG iterations, loss after)`` per step, passes over ``V`` (per step: 5
    set-up, 2 per CG iteration, 1 trial loss, 2 for a warm start), seconds (compile excluded) and
    the final loss.
    """
    phase = R.LMPhase(R.LevenbergMarquardt(cg_iters=cg_iters, damping=damping, cg_tol=cg_tol), None, lambda z: z)
    plain = jax.jit(phase.step_counted)
    custom = jax.jit(lambda t, z, dmp, z0, eta: _variant_step(cg_iters, t, z, dmp, z0, eta, variant == "warm"))
    loss_of = jax.jit(lambda t, z: jnp.sum(R.projector_residual(t.fmap, t.theta, z) ** 2))
    dmp, delta, eta = phase.init(x, x.dtype), jnp.zeros_like(x), jnp.asarray(cg_tol, x.dtype)

    def step(z, dmp, delta, eta):
        if variant == "plain":
            return plain(target, z, dmp) + (delta,)
        return custom(target, z, dmp, delta if variant == "warm" else None, eta)

    block(step(x, dmp, delta, eta)), block(loss_of(target, x))  # compile
    t0, loss, prev, steps, its, rejected, trace = time.perf_counter(), float("inf"), None, 0, 0, 0, []
    for steps in range(1, max_steps + 1):
        x, dmp_new, loss_at, *_, k, delta = block(step(x, dmp, delta, eta))
        rejected += int(dmp_new > dmp)
        dmp, its = dmp_new, its + int(k)
        loss = float(loss_of(target, x))
        trace.append((int(k), loss))
        if variant == "ew2" and prev is not None:
            eta = jnp.asarray(min(cg_tol, max(0.9 * float(loss_at) / prev, 0.9 * float(eta) ** 2)), x.dtype)
        prev = float(loss_at)
        if loss < tol:
            break
    return {"variant": variant, "cg_iters": cg_iters, "cg_tol": cg_tol, "damping": phase.config.damping,
            "steps": steps, "rejected": rejected, "cg_iters_total": its,
            "passes": (8 if variant == "warm" else 6) * steps + 2 * its, "seconds": time.perf_counter() - t0,
            "loss": loss, "converged": loss < tol, "trace": trace}


if __name__ == "__main__":
    main()
