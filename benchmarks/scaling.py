"""Scaling study: time to exact recovery and peak memory against n, at fixed d and p = r·d·n.

    nice -n 10 python benchmarks/scaling.py --d 50 100 --n 5 10 20 40 80 100 --budget 180
    python benchmarks/scaling.py --d 100 768 3072 --n 5 10 20 50 100 --budget 600   # the issue's grid (GPU)
    python benchmarks/scaling.py --replot                                           # figure + cost model only

One point = one synthetic data set on the sphere (key ``--data-seed``), one ReLU random-features
model with ``p = round(r d n)`` fitted on it, and ONE attack seed (key 7), run in a child process
(so its peak memory is its own) under a wall-clock ``--budget`` that includes compilation. After
every chunk of steps the iterate is matched to the training set; the point is *exact* at the first
chunk where every row's error_sign is ``<= 1e-3`` (``t_exact_s``: seconds to that chunk, compile
included, the matching's own time subtracted). A point that passes its budget is recorded as
``budget`` (the child is killed at ``1.5 budget + 60`` s if a chunk overruns) and the study goes on.
Each finished point is appended to ``benchmarks/results/scaling/results.csv`` at once (flushed and
fsynced); a rerun skips the points already there, so the study can be stopped and resumed.

Passes over V. The cost of a step is counted in passes over the random-features matrix V
(``p x d``): one pass is one product of V with an ``n``-row operand, ``n d p`` multiply-adds, read
from memory (dense V) or regenerated block by block (streamed V). The counts follow the phases:

* first-order step (Adam, SGD): forward ``X Vᵀ`` (1 pass) and backward ``(dL/dPhi ⊙ sigma') V``
  (1 pass): 2 with a dense V; a streamed map regenerates each block and recomputes ``X Vᵀ`` in
  the backward (rematerialisation), so 3.
* LM step: the linearisation (forward + ``Jᵀ r``, 2), the Rayleigh-quotient scale of the damping
  (one ``JᵀJ u``, 2), ``cg_iters`` CG iterations of ``JᵀJ u`` (``J u`` and ``Jᵀ v``, 2 each) and
  the trial residual (1): ``2 cg_iters + 5`` (65 at the default 30 CG iterations).

Steps per phase are read from the state after every chunk (``phase`` and ``phase_start``), so
chunks that contain a phase change attribute their steps exactly as long as at most one change
happens within a chunk (``--chunk`` bounds that). With the split start (``adam-lm-split``) the
first stage's steps are counted in these columns too (the seeds driver runs it in chunks) and
again in ``steps_split``; its steps read V about 1.5 times as often (the even features ``E`` and
``E V``), which the pass count leaves out, and its one-time ``V^T V`` (``d`` passes of one row).
The printed cost model is
``time ≈ passes(n) · n d p / throughput``, with ``passes(n)`` fitted as a power of n.

Writes ``results.csv``, ``meta.json`` (machine, versions, arguments of each run) and
``scaling.png`` (log-log time to exact and total passes against n, one line per d, fitted slopes
over the exact points only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "scaling"
COLUMNS = ["d", "n", "p", "p_over_dn", "method", "block_size", "outcome", "t_exact_s", "seconds", "compile_s",
           "monitor_s", "steps", "steps_first", "steps_lm", "steps_split", "stalls", "passes", "loss", "error_sign_max",
           "error_sign_mean", "peak_rss_mb", "peak_device_mb", "budget_s", "device"]
EXACT = 1e-3  # every row's error_sign at most this


def passes_per_step(phase: str, streamed: bool = False, cg_iters: int = 30) -> int:
    """Passes over V of one step of a phase (``"first"`` or ``"lm"``): see the module docstring."""
    if phase == "first":
        return 3 if streamed else 2
    if phase == "lm":
        return 2 * cg_iters + 5
    raise ValueError(f"phase: must be 'first' or 'lm', got {phase!r}")


class PhaseSteps:
    """Steps per phase from the state after each chunk (one seed): at most one phase change per
    chunk is attributed exactly, the steps before ``phase_start`` going to the other phase."""

    def __init__(self):
        self.first = self.lm = self.last = 0
        self.split = None

    def update(self, state):
        from jaxrecon.attack.state import Phase

        if not hasattr(state, "phase"):  # a population: no per-phase clock
            return
        start = int(np.asarray(state.start_steps).reshape(-1)[0]) if state.start_steps is not None else 0
        if self.split is None and start > 0:  # a split start run whole before the first chunk (pure path)
            self.last = start
        self.split = max(self.split or 0, start)  # the driver runs it in chunks: its phases counted too
        steps, start, phase = (int(np.asarray(a).reshape(-1)[0]) for a in (state.steps, state.phase_start, state.phase))
        in_phase = steps - max(start, self.last)
        before = max(start, self.last) - self.last
        lm_now = phase == Phase.LM
        self.lm += in_phase * lm_now + before * (not lm_now)
        self.first += in_phase * (not lm_now) + before * lm_now
        self.last = steps


def run_point(d, n, ratio, method_spec, budget, chunk, block_size, data_seed, max_steps=10_000_000) -> dict:
    """One point (in this process): see the module docstring. Returns a row of :data:`COLUMNS`."""
    import jax

    import jaxrecon as jr
    from jaxrecon.metrics import match
    from time_to_solution import parse_method

    method = parse_method(method_spec)
    p = int(round(ratio * d * n))
    data = jr.synthetic(jax.random.key(data_seed), n, d)
    fmap = jr.RandomFeatures(jax.random.key(data_seed + 1), d, p, block_size=block_size)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    x = np.asarray(data.x)
    phases, seen = PhaseSteps(), {"t_exact": None, "monitor": 0.0}

    def record(now, state):
        t0 = time.perf_counter()
        phases.update(state)
        x_hat = np.asarray(state.x_hat)[0]  # the one seed (a population: its first member)
        m = match(x, x_hat if x_hat.ndim == 2 else x_hat[0])
        if seen["t_exact"] is None and float(np.max(m.row_error)) <= EXACT:
            seen["t_exact"] = now - seen["monitor"]
        seen["monitor"] += time.perf_counter() - t0

    res = jr.reconstruct_seeds(target, jax.random.key(7), n, 1, method=method, steps=max_steps, chunk=chunk,
                               progress=False, time_budget=budget, callback=record)
    final = match(x, res.x_hat[0])
    row_err = np.asarray(final.row_error)
    exact = seen["t_exact"] is not None or float(row_err.max()) <= EXACT
    status = res.status[0]
    outcome = "exact" if exact else ("budget" if status in ("budget", "running") else f"wrong_{status}")
    cg = method.lm.cg_iters if method.lm is not None else 0
    streamed = block_size is not None
    passes = phases.first * passes_per_step("first", streamed) + phases.lm * (passes_per_step("lm", streamed, cg)
                                                                             if cg else 0)
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    peak_dev = (stats or {}).get("peak_bytes_in_use")
    return {"d": d, "n": n, "p": p, "p_over_dn": ratio, "method": method_spec, "block_size": block_size or "",
            "outcome": outcome, "t_exact_s": round(seen["t_exact"] if seen["t_exact"] is not None else
                                                   (float(res.seconds[0]) - seen["monitor"] if exact else float("nan")), 3),
            "seconds": round(float(res.seconds[0]) - seen["monitor"], 3), "compile_s": round(res.compile_seconds, 3),
            "monitor_s": round(seen["monitor"], 3), "steps": int(res.steps[0]), "steps_first": phases.first, "steps_split": phases.split or 0,
            "steps_lm": phases.lm, "stalls": int(res.stalls[0]), "passes": passes, "loss": float(res.loss[0]),
            "error_sign_max": float(row_err.max()), "error_sign_mean": float(row_err.mean()),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_device_mb": round(peak_dev / 2**20, 1) if peak_dev else "", "budget_s": budget,
            "device": dev.device_kind}


def done_points(path: Path) -> set:
    if not path.exists():
        return set()
    with path.open() as f:
        return {(int(r["d"]), int(r["n"]), float(r["p_over_dn"]), r["method"], r["block_size"])
                for r in csv.DictReader(f)}


def append_row(path: Path, row: dict) -> None:
    """Append one row durably (header first if the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def spawn_point(args, d, n) -> dict:
    """Run one point in a child process; a child past its hard limit is killed and marked ``budget``."""
    cmd = [sys.executable, __file__, "--point", str(d), str(n), "--p-over-dn", str(args.p_over_dn),
           "--method", args.method, "--budget", str(args.budget), "--chunk", str(args.chunk),
           "--data-seed", str(args.data_seed), "--steps", str(args.steps)] + (["--block-size", str(args.block_size)] if args.block_size else [])
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1.5 * args.budget + 60)
    except subprocess.TimeoutExpired:
        return {"d": d, "n": n, "p": int(round(args.p_over_dn * d * n)), "p_over_dn": args.p_over_dn,
                "method": args.method, "block_size": args.block_size or "", "outcome": "budget",
                "seconds": round(time.perf_counter() - t0, 1), "budget_s": args.budget}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"    point failed (rc {out.returncode}): {tail[0]}", flush=True)
        return {"d": d, "n": n, "p": int(round(args.p_over_dn * d * n)), "p_over_dn": args.p_over_dn,
                "method": args.method, "block_size": args.block_size or "", "outcome": f"error_rc{out.returncode}",
                "budget_s": args.budget}
    return json.loads(lines[-1])


def read_rows(path: Path) -> list:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def fit_slope(n, t):
    """Exponent ``a`` of ``t ≈ c n^a`` (least squares in log-log); NaN with fewer than 2 points."""
    n, t = np.asarray(n, float), np.asarray(t, float)
    if len(n) < 2 or len(set(n)) < 2:
        return float("nan"), float("nan")
    a, logc = np.polyfit(np.log(n), np.log(t), 1)
    return float(a), float(np.exp(logc))


def gram_work(row: dict) -> float:
    """Multiply-adds spent on ``n x n`` Gram products over the p features (not passes over V):
    a first-order step forms ``A = Phi Phiᵀ`` and its cotangent (about 3 ``n² p``), an LM step
    the kernel of its linearisation (about ``n² p``). Above ``n ≈ d`` this outweighs V."""
    n, p = int(row["n"]), int(row["p"])
    return (3 * float(row["steps_first"]) + float(row["steps_lm"])) * n * n * p


def cost_model(rows: list) -> list:
    """Per (d, method): slopes of time to exact, steps and passes in n over the exact points, and
    for every point the seconds per step and the throughput ``(passes · n d p + Gram work) / run
    time`` (multiply-adds per second, compilation excluded)."""
    lines = []
    for key in sorted({(int(r["d"]), r["method"]) for r in rows}):
        mine = sorted((r for r in rows if (int(r["d"]), r["method"]) == key and r.get("steps")),
                      key=lambda r: int(r["n"]))
        pts = [r for r in mine if r["outcome"] == "exact"]
        failed = [int(r["n"]) for r in mine if r["outcome"] != "exact"]
        if len(pts) >= 2:
            n = [int(r["n"]) for r in pts]
            col = lambda c: [float(r[c]) for r in pts]
            a_t, _ = fit_slope(n, col("t_exact_s"))
            a_r, _ = fit_slope(n, [max(t - c, 1e-3) for t, c in zip(col("t_exact_s"), col("compile_s"))])
            a_s, _ = fit_slope(n, col("steps"))
            a_p, _ = fit_slope(n, [max(v, 1.0) for v in col("passes")])
            lines.append(f"d={key[0]} {key[1]}: time to exact ~ n^{a_t:.2f} with compilation, n^{a_r:.2f} "
                         f"without; steps ~ n^{a_s:.2f}; passes over V ~ n^{a_p:.2f}, each n*d*p = r*d^2*n^2 "
                         f"multiply-adds, so V work ~ n^{a_p + 2:.2f}; exact at n={n}; not exact at n={failed}")
        else:
            lines.append(f"d={key[0]} {key[1]}: fewer than 2 exact points (not exact at n={failed})")
        for r in mine:
            run = max(float(r["seconds"]) - float(r["compile_s"]), 1e-9)
            v_work = float(r["passes"]) * int(r["n"]) * int(r["d"]) * int(r["p"])
            lines.append(f"    n={r['n']:>4} {r['outcome']:>7}: {int(r['steps']):>5} steps ({r['steps_first']} first-order, "
                         f"{r['steps_lm']} LM), {run / max(int(r['steps']), 1):.3f} s/step, V work {v_work:.2e}, "
                         f"Gram work {gram_work(r):.2e}, {(v_work + gram_work(r)) / run / 1e9:.2f} GMAC/s")
    return lines


def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    keys = sorted({(int(r["d"]), r["method"]) for r in rows})
    for (d, m), color in zip(keys, plt.cm.tab10.colors):
        pts = sorted((r for r in rows if (int(r["d"]), r["method"]) == (d, m)), key=lambda r: int(r["n"]))
        ok = [r for r in pts if r["outcome"] == "exact"]
        bad = [r for r in pts if r["outcome"] != "exact"]
        for ax, col in zip(axes, ("t_exact_s", "passes", "peak_rss_mb")):
            n = [int(r["n"]) for r in ok]
            v = [float(r[col]) for r in ok]
            a, c = fit_slope(n, v) if col != "peak_rss_mb" else (float("nan"), 0)
            label = f"d={d} {m}" + (f": n^{a:.2f}" if np.isfinite(a) else "")
            ax.plot(n, v, "o-", color=color, label=label)
            if np.isfinite(a):
                ax.plot(n, c * np.asarray(n, float) ** a, ":", color=color, lw=1)
            if col == "t_exact_s" and bad:
                ax.plot([int(r["n"]) for r in bad], [float(r["budget_s"]) for r in bad], "x", color=color, ms=9,
                        label=f"d={d}: not exact (at budget)")
    for ax, title in zip(axes, ("time to exact (s, compile incl.)", "passes over V", "peak host RSS (MB)")):
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:  # no exact point: nothing to put on log axes
            ax.text(0.5, 0.5, "no exact point", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("n")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    p_over_dn = sorted({float(r["p_over_dn"]) for r in rows})
    fig.suptitle(f"time to exact recovery vs n, p = {','.join(f'{v:g}' for v in p_over_dn)}·dn, one seed per point",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, nargs="+", default=[100, 768, 3072])
    ap.add_argument("--n", type=int, nargs="+", default=[5, 10, 20, 40, 80, 100])
    ap.add_argument("--p-over-dn", type=float, default=10.0)
    ap.add_argument("--method", default="adam-lm", help="name[:key=value,...] as in time_to_solution.py")
    ap.add_argument("--budget", type=float, default=180.0, help="wall-clock seconds per point, compile included")
    ap.add_argument("--chunk", type=int, default=10, help="steps per chunk (matching after each)")
    ap.add_argument("--block-size", type=int, default=None, help="stream V in blocks (default: dense V)")
    ap.add_argument("--steps", type=int, default=10_000_000, help="step budget per point (as well as --budget)")
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--replot", action="store_true", help="only redraw the figure and print the cost model")
    ap.add_argument("--point", type=int, nargs=2, metavar=("D", "N"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.point:
        print(json.dumps(run_point(*args.point, args.p_over_dn, args.method, args.budget, args.chunk,
                                   args.block_size, args.data_seed, args.steps)), flush=True)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    if not args.replot:
        sys.path.insert(0, str(Path(__file__).parent))
        from _common import machine

        meta_path = out / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else []
        meta.append({"args": {k: v for k, v in vars(args).items() if k not in ("point", "out")}, "machine": machine(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        meta_path.write_text(json.dumps(meta, indent=2))
        done = done_points(csv_path)
        for d in args.d:
            for n in args.n:
                key = (d, n, float(args.p_over_dn), args.method, str(args.block_size or ""))
                if key in done:
                    print(f"d={d} n={n}: done, skipped", flush=True)
                    continue
                row = spawn_point(args, d, n)
                append_row(csv_path, row)
                print(f"d={d} n={n} p={row['p']}: {row['outcome']}  t_exact {row.get('t_exact_s', '')} s  "
                      f"steps {row.get('steps', '')} (first {row.get('steps_first', '')}, lm {row.get('steps_lm', '')})"
                      f"  stalls {row.get('stalls', '')}  peak {row.get('peak_rss_mb', '')} MB", flush=True)
    rows = read_rows(csv_path)
    if rows:
        plot(rows, out / "scaling.png")
        print("\n".join(["cost model (slopes over the exact points):"] + cost_model(rows)))
        print(f"wrote {csv_path} and {out / 'scaling.png'}")


if __name__ == "__main__":
    main()
