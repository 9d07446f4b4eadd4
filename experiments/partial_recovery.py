"""Partial recovery below the threshold: which training rows leak when p < d n, and how many.

    nice -n 10 python experiments/partial_recovery.py --out benchmarks/results/partial_recovery
    python experiments/partial_recovery.py --quick --out runs/pr      # a 1-minute smoke run

Random-features regression (ReLU, d = 50, n = 10, so d n = 500) at p/(dn) in
{0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5}, 8 seeds per point, each seed its own data, features
and attack. The attack (``adam-lm``, 2000 steps) starts at random points on the sphere, as a real
attacker must: a start planted near ``X`` would put every row near its training row whatever ``p``.

Below ``p = d n`` the zeros of the loss form a manifold through ``X``, so a seed can reach
``L ~ 0`` (solved, ``L <= 1e-10``) without being the training set; a training row is
*recovered* when its matched row of ``x_hat`` is within ``1e-2`` of it (sign-aware error, per
coordinate scale: ``min_s ||x_i - s x_hat_j|| / sqrt(d) <= 1e-2``, :func:`jaxrecon.outcomes.row_outcomes`).
A recovered row of a solved seed below the threshold is genuine leakage.

Outputs (under ``--out``): ``point_p{p}.npz`` per point (``x``, ``x_hat``, ``alpha`` (the fitted
dual coefficients, ``theta = Phi^T alpha``), ``error``, ``recovered``, ``loss``, ``status``,
``kinv_diag``, ``gram_diag`` (diagonals of ``K^{-1}`` and ``K``)), ``rows.csv`` (one line per training row: ``p``, ``seed``,
``row``, ``error``, ``recovered``, ``abs_alpha``, ``alpha_rank`` (0 = largest ``|alpha_i|`` of its
seed), ``nn_dist`` (distance to the nearest other row or its negative, ``/ sqrt(d)``),
``feature_residual`` (``1 / (K_ii (K^{-1})_ii)``: the fraction of ``|phi(x_i)|^2`` outside the span
of the other rows' features, a kernel outlier score), ...), ``partial_recovery.png`` and
``run.json`` (config, versions, seconds per point).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

D, N = 50, 10
P_OVER_DN = [0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5]
SEEDS = 8
STEPS = 2000
METHOD = "adam-lm"
#: A row is recovered when its sign-aware error is at most this (jaxrecon.metrics.RECOVERED_TOL).
RECOVERED = 1e-2
COLUMNS = ("d", "n", "p", "p_over_dn", "seed", "row", "error", "error_plain", "recovered", "flipped",
           "abs_alpha", "alpha_rank", "nn_dist", "feature_residual", "loss", "solved", "status")


def attack_trials(d: int, n: int, p: int, seeds: int, seed: int = 0, *, method: str = METHOD,
                  steps: int = STEPS, activation: str = "relu", noise: float = 0.5) -> dict:
    """``seeds`` independent trials at one point, compiled once and mapped over seeds.

    Seed ``s`` draws data, features and the attack's start from ``fold_in(key(seed), s)``. Returns
    NumPy arrays with a leading seed axis: ``x``, ``x_hat`` (``n x d``), ``alpha`` (``n``),
    ``kinv_diag``, ``gram_diag`` (``n``: diagonals of ``K^{-1}`` and ``K``), ``loss``, ``steps``, ``status``, and ``seconds`` (the wall time,
    compilation included)."""
    import jax
    import jax.numpy as jnp

    from jaxrecon import RandomFeatures, Target, reconstruct, synthetic
    from jaxrecon.models.rf import fit_with_info

    def trial(key):
        k_data, k_model, k_attack = jax.random.split(key, 3)
        data = synthetic(k_data, n, d, noise)
        fmap = RandomFeatures(k_model, d, p, activation).prepare()
        fitted = fit_with_info(fmap, data.x, data.y)
        gram = fmap.gram(data.x, data.x)
        kinv_diag = jnp.diag(jnp.linalg.pinv(gram, hermitian=True))
        res = reconstruct(Target(fmap, fitted.theta), k_attack, n, method=method, steps=steps)
        return {"x": data.x, "x_hat": res.x_hat, "alpha": fitted.alpha, "kinv_diag": kinv_diag,
                "gram_diag": jnp.diag(gram),
                "loss": res.loss, "steps": res.steps, "status": res.status}

    base = jax.random.key(seed)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(seeds))
    t0 = time.perf_counter()
    out = jax.jit(lambda k: jax.lax.map(trial, k))(keys)
    out = {k: np.asarray(v) for k, v in out.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def nn_dist(x: np.ndarray) -> np.ndarray:
    """Per row: ``min_{j != i, s = +-1} ||x_i - s x_j|| / sqrt(d)`` (how isolated the row is)."""
    x = np.asarray(x, np.float64)
    plus = np.linalg.norm(x[:, None] - x[None], axis=-1)
    minus = np.linalg.norm(x[:, None] + x[None], axis=-1)
    dist = np.minimum(plus, minus)
    np.fill_diagonal(dist, np.inf)
    return dist.min(axis=1) / np.sqrt(x.shape[1])


def point_rows(arrays: dict, d: int, n: int, p: int, tol: float = RECOVERED) -> list[dict]:
    """One dict per training row of every seed of a point (the ``rows.csv`` lines); adds the
    per-row ``error`` and ``recovered`` arrays to ``arrays`` (for the npz)."""
    from jaxrecon.attack.state import STATUS_NAMES
    from jaxrecon.outcomes import method_tolerance, row_outcomes, solved

    tol_loss = method_tolerance(METHOD)
    rows, errors, recovered = [], [], []
    for s in range(arrays["x"].shape[0]):
        x, alpha = arrays["x"][s], np.abs(arrays["alpha"][s].astype(np.float64))
        r = row_outcomes(arrays["x_hat"][s], x, tol)
        errors.append(r.error)
        recovered.append(r.recovered)
        rank = np.empty(n, int)
        rank[np.argsort(-alpha, kind="stable")] = np.arange(n)
        resid = 1.0 / (arrays["kinv_diag"][s].astype(np.float64) * arrays["gram_diag"][s])
        nn = nn_dist(x)
        loss = float(arrays["loss"][s])
        for i in range(n):
            rows.append({"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "seed": s, "row": i,
                         "error": float(r.error[i]), "error_plain": float(r.error_plain[i]),
                         "recovered": int(r.recovered[i]), "flipped": int(r.flipped[i]),
                         "abs_alpha": float(alpha[i]), "alpha_rank": int(rank[i]), "nn_dist": float(nn[i]),
                         "feature_residual": float(resid[i]), "loss": loss,
                         "solved": int(solved(loss, tol_loss)), "status": STATUS_NAMES[int(arrays["status"][s])]})
    arrays["error"], arrays["recovered"] = np.array(errors), np.array(recovered)
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def read_rows(path: Path) -> dict:
    """``rows.csv`` as a dict of NumPy arrays keyed by column."""
    with open(path, newline="") as f:
        lines = list(csv.DictReader(f))
    table = {}
    for c in COLUMNS:
        vals = [line[c] for line in lines]
        table[c] = np.array(vals) if c == "status" else np.array(vals, dtype=float)
    return table


def save_point(out: Path, p: int, arrays: dict) -> None:
    """The point's arrays, float32 (enough for errors down to ~1e-6), as ``point_p{p}.npz``."""
    small = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()
             if k != "seconds"}
    np.savez_compressed(out / f"point_p{p}.npz", **small)


def random_baseline(d: int, n: int, draws: int = 200, seed: int = 0) -> float:
    """Mean per-row error of a guess that knows nothing: ``n`` independent points on the sphere,
    matched to ``n`` others like a reconstruction (about 1.2 at d = 50, n = 10)."""
    from jaxrecon.outcomes import row_outcomes

    rng = np.random.default_rng(seed)

    def sphere():
        g = rng.normal(size=(n, d))
        return g * (np.sqrt(d) / np.linalg.norm(g, axis=1, keepdims=True))

    return float(np.mean([row_outcomes(sphere(), sphere()).error.mean() for _ in range(draws)]))


def _by_rank(table, column, ratios, n, keep):
    """Per ratio kept by ``keep(mask)``: the mean of ``column`` over rows of each |alpha| rank."""
    out = {}
    for r in ratios:
        m = table["p_over_dn"] == r
        if keep(m):
            out[r] = [table[column][m & (table["alpha_rank"] == k)].mean() for k in range(n)]
    return out


def figure(table: dict, path: Path | None = None, baseline: float | None = None):
    """Left: fraction of rows recovered per seed against p/(dn) (mean, min-max band), and the
    fraction of seeds solved. Middle: P(recovered) against the rank of |alpha_i| in its seed, at
    the points with some recovery. Right: mean row error against that rank, at every point
    (``baseline``: the error of an uninformed guess, :func:`random_baseline`)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4), layout="constrained")
    ax, ax2, ax3 = fig.subplots(1, 3)
    ratios = np.unique(table["p_over_dn"])
    per_seed = [[table["recovered"][(table["p_over_dn"] == r) & (table["seed"] == s)].mean()
                 for s in np.unique(table["seed"][table["p_over_dn"] == r])] for r in ratios]
    solved = [table["solved"][table["p_over_dn"] == r].mean() for r in ratios]
    ax.fill_between(ratios, [min(v) for v in per_seed], [max(v) for v in per_seed], color="#c0392b", alpha=0.18)
    ax.plot(ratios, [np.mean(v) for v in per_seed], "o-", color="#c0392b",
            label=f"rows recovered, error ≤ {RECOVERED:g} (mean, min-max over seeds)")
    ax.plot(ratios, solved, "s--", color="#1f5fa8", label="seeds solved (L ≤ 1e-10)")
    ax.axvline(1.0, color="0.45", ls="--", lw=1)
    ax.set(xscale="log", xlabel="p / (d n)", ylabel="fraction", ylim=(-0.03, 1.03),
           title=f"partial recovery (d={int(table['d'][0])}, n={int(table['n'][0])}, random starts)")
    ax.legend(fontsize=7, loc="center left")
    n = int(table["n"][0])
    ranks = np.arange(1, n + 1)
    colors = colormaps["viridis"]
    shade = {r: colors(i / max(1, len(ratios) - 1)) for i, r in enumerate(ratios)}
    for r, prob in _by_rank(table, "recovered", ratios, n, lambda m: table["recovered"][m].any()).items():
        ax2.plot(ranks, prob, "o-", color=shade[r], label=f"p/(dn) = {r:g}")
    ax2.set(xlabel="rank of |α_i| in its seed (1 = largest)", ylabel="P(row recovered)", ylim=(-0.03, 1.03),
            title="which rows are recovered")
    if ax2.lines:
        ax2.legend(fontsize=7)
    for r, err in _by_rank(table, "error", ratios, n, lambda m: True).items():
        ax3.plot(ranks, err, "o-", ms=3, color=shade[r], label=f"{r:g}")
    if baseline is not None:
        ax3.axhline(baseline, color="0.45", ls=":", lw=1, label="random guess")
    ax3.set(xlabel="rank of |α_i| in its seed (1 = largest)", ylabel="mean row error (sign-aware)",
            title="which rows leak first: error by |α| rank")
    ax3.legend(fontsize=7, title="p/(dn)", title_fontsize=7, ncols=2)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def run(out, d: int = D, n: int = N, ratios=P_OVER_DN, seeds: int = SEEDS, steps: int = STEPS,
        seed: int = 0, progress: bool = True) -> dict:
    """Run every point, write the npz files, ``rows.csv``, ``run.json`` and the figure; return the
    table of rows."""
    from jaxrecon.io import versions, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, seconds = [], {}
    for r in ratios:
        p = max(1, round(r * d * n))
        arrays = attack_trials(d, n, p, seeds, seed, steps=steps)
        seconds[p] = arrays["seconds"]
        pr = point_rows(arrays, d, n, p)
        save_point(out, p, arrays)
        rows += pr
        if progress:
            rec = np.mean([row["recovered"] for row in pr])
            print(f"p={p} (p/dn={p / (d * n):g}): {rec:.2f} of rows recovered, "
                  f"{np.mean([row['solved'] for row in pr]):.2f} solved, {seconds[p]:.1f} s", flush=True)
    write_rows(out / "rows.csv", rows)
    baseline = random_baseline(d, n)
    write_json(out / "run.json", {"config": {"d": d, "n": n, "p_over_dn": list(ratios), "seeds": seeds,
                                             "steps": steps, "seed": seed, "method": METHOD,
                                             "recovered_tol": RECOVERED, "activation": "relu"},
                                  "random_guess_error": baseline, "seconds": seconds, "versions": versions()})
    table = read_rows(out / "rows.csv")
    figure(table, out / "partial_recovery.png", baseline)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true", help="d=10, n=4, 3 points, 2 seeds, 300 steps")
    args = parser.parse_args(argv)
    if args.quick:
        run(args.out, d=10, n=4, ratios=[0.2, 0.5, 2], seeds=2, steps=300)
    else:
        run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
