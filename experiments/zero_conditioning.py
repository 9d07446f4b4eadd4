"""How isolated is the training set as a zero of the projector loss, against p?

    python experiments/zero_conditioning.py                       # ~2 min on 2 CPU cores
    python experiments/zero_conditioning.py --dn 10x20 25x6 --seeds 5 --out runs/zero_conditioning

At the training inputs X the projector residual vanishes; its Jacobian on the rows' tangent
spaces (``jaxrecon.identifiability.spectrum``, float64) gives

* the nullity: the dimension of the manifold of zeros through X, against the counting prediction
  max(0, d n - p) (theta in the span of Phi(x_hat) is p - n equations for n (d - 1) unknowns);
* the smallest singular value above the null space, relative to the largest (blocks scaled by
  the rows' coefficients, as the LM phase scales them): how wide X's basin is for a local solver.
  Next to it the Marchenko-Pastur edge of a Gaussian matrix of the same shape,
  ``|sqrt(p - n) - sqrt(n (d - 1))| / (sqrt(p - n) + sqrt(n (d - 1)))``, which vanishes at p = d n.

Writes results.csv (one row per (d, n, p, seed)), summary.json (config, versions) and
conditioning.png to --out (default benchmarks/results/zero_conditioning).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

RATIOS = (0.5, 0.75, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0)
COLUMNS = ("d", "n", "p", "p_over_dn", "seed", "nullity", "predicted_nullity", "s_min", "mp_edge")


def mp_edge(d: int, n: int, p: int) -> float:
    """Relative smallest singular value of a Gaussian ``(p - n) x n (d - 1)`` matrix (MP edge)."""
    a, b = math.sqrt(max(p - n, 0)), math.sqrt(n * (d - 1))
    return abs(a - b) / (a + b)


def measure(d: int, n: int, ratios, seeds: int) -> list[dict]:
    import jax

    import jaxrecon as jr
    from jaxrecon.identifiability import spectrum

    rows = []
    for ratio in ratios:
        p = int(round(ratio * d * n))
        for seed in range(seeds):
            k_data, k_v = jax.random.split(jax.random.PRNGKey(seed))
            data = jr.synthetic(k_data, n=n, d=d)
            fmap = jr.RandomFeatures(k_v, d=d, p=p).prepare()
            s = spectrum(jr.Target(fmap, jr.fit(fmap, data.x, data.y)), data.x)
            rows.append(dict(d=d, n=n, p=p, p_over_dn=p / (d * n), seed=seed, nullity=s.nullity,
                             predicted_nullity=s.predicted_nullity, s_min=s.s_min, mp_edge=mp_edge(d, n, p)))
        last = rows[-seeds:]
        print(f"d={d} n={n} p/(dn)={p / (d * n):.3g}: nullity {[r['nullity'] for r in last]} "
              f"(counting {last[0]['predicted_nullity']}), s_min {min(r['s_min'] for r in last):.2e}"
              f" .. {max(r['s_min'] for r in last):.2e}", flush=True)
    return rows


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, (d, n) in enumerate(sorted({(r["d"], r["n"]) for r in rows})):
        sub = [r for r in rows if (r["d"], r["n"]) == (d, n)]
        col = f"C{i}"
        ratios = sorted({r["p_over_dn"] for r in sub})
        ax0.plot([r["p_over_dn"] for r in sub], [r["nullity"] / (d * n) for r in sub], "o", color=col,
                 alpha=0.5, label=f"d={d}, n={n}")
        ax1.plot([r["p_over_dn"] for r in sub], [r["s_min"] for r in sub], "o", color=col, alpha=0.5,
                 label=f"d={d}, n={n}")
        level = _median([r["s_min"] / r["mp_edge"] for r in sub if r["p_over_dn"] >= 2])
        ax1.plot(ratios, [mp_edge(d, n, int(round(q * d * n))) * level for q in ratios], "-", color=col, lw=1)
    grid = [x / 100 for x in range(40, 310)]
    ax0.plot(grid, [max(0.0, 1 - q) for q in grid], "k-", lw=1, label="counting: max(0, dn - p)")
    ax0.set(xlabel="p / (d n)", ylabel="nullity / (d n)", title="manifold of zeros through X", xscale="log")
    ax1.set(xlabel="p / (d n)", ylabel="s_min / s_max (row-scaled)", yscale="log", xscale="log",
            title="isolation of X (lines: MP edge, scaled at p >= 2dn)")
    for ax in (ax0, ax1):
        ax.axvline(1.0, color="0.6", ls=":", lw=1)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dn", nargs="+", default=["10x20", "25x6", "50x10"], help="d x n pairs, e.g. 10x20")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS), help="p / (d n) values")
    ap.add_argument("--out", default="benchmarks/results/zero_conditioning")
    args = ap.parse_args(argv)
    pairs = []
    for text in args.dn:
        try:
            d, n = (int(v) for v in text.lower().split("x"))
        except ValueError:
            ap.error(f"--dn: expected pairs like 10x20, got {text!r}")
        pairs.append((d, n))
    if args.seeds < 1:
        ap.error(f"--seeds: must be >= 1, got {args.seeds}")

    from jaxrecon.config import x64
    from jaxrecon.io import atomic_write, versions, write_json

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with x64():
        rows = [r for d, n in pairs for r in measure(d, n, args.ratios, args.seeds)]
    def write_rows(fh):
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)

    atomic_write(out / "results.csv", write_rows)
    config = dict(dn=pairs, seeds=args.seeds, ratios=args.ratios, activation="relu", dtype="float64")
    write_json(out / "summary.json", dict(config=config, versions=versions()))
    figure(rows, out / "conditioning.png")
    print(f"wrote {out}/results.csv, summary.json, conditioning.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
