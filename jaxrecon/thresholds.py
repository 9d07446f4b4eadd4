"""The headline number of a sweep: where the reconstruction error drops, in units of ``d * n``.

For each curve (one ``(d, n, activation, method)``) the error is averaged over seeds at every ``p``.
Its *low-p level* is the mean error at the smallest ``p`` of the grid; the threshold ``p*`` is the
first ``p`` where the mean error falls below ``frac`` (default 1/2) of that level, interpolated
linearly in ``log p`` between the two grid points around the crossing. The law predicts
``p* / (d n) ~ 1``. The spread comes from a bootstrap over seeds (each seed is a whole curve: its
data and features are shared across ``p``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

THRESHOLD_COLUMNS = ("d", "n", "activation", "method", "seeds", "low_level", "threshold_p",
                     "threshold_p_over_dn", "boot_std", "boot_lo", "boot_hi", "boot_found")


def crossing(p, error, frac: float = 0.5) -> float:
    """``p`` where ``error`` first falls below ``frac * error[0]`` (``p`` ascending), interpolated
    in ``log p``; ``nan`` when it never does or the low-p level is not positive."""
    p = np.asarray(p, np.float64)
    e = np.asarray(error, np.float64)
    if p.ndim != 1 or p.shape != e.shape or p.size == 0:
        raise ValueError(f"error: must be a vector matching p, got shapes {p.shape} and {e.shape}")
    if np.any(np.diff(p) <= 0):
        raise ValueError("p: must be strictly increasing")
    level = frac * e[0]
    if not np.isfinite(level) or level <= 0:
        return math.nan
    below = np.nonzero(e < level)[0]
    if below.size == 0:
        return math.nan
    i = below[0]
    lp0, lp1 = math.log(p[i - 1]), math.log(p[i])
    t = (e[i - 1] - level) / (e[i - 1] - e[i])
    return math.exp(lp0 + t * (lp1 - lp0))


def _curves(table, metric):
    """``{(d, n, activation, method): (p_sorted, errors[seeds, P])}``."""
    keys = sorted(set(zip(table["d"].tolist(), table["n"].tolist(), table["activation"].tolist(),
                          table["method"].tolist())))
    out = {}
    for k in keys:
        sel = ((table["d"] == k[0]) & (table["n"] == k[1]) & (table["activation"] == k[2])
               & (table["method"] == k[3]))
        ps = np.unique(table["p"][sel])
        seeds = np.unique(table["seed"][sel])
        E = np.full((seeds.size, ps.size), np.nan)
        for j, p in enumerate(ps):
            for i, s in enumerate(seeds):
                m = sel & (table["p"] == p) & (table["seed"] == s)
                if m.any():
                    E[i, j] = table[metric][m][0]
        out[k] = (ps, E)
    return out


def estimate_thresholds(table: dict, metric: str = "error_abs", frac: float = 0.5,
                        n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One row per ``(d, n, activation, method)``: the threshold and its bootstrap spread.

    ``boot_std`` is the standard deviation of the bootstrap thresholds, ``boot_lo``/``boot_hi``
    their 16th/84th percentiles (in units of ``d n``), ``boot_found`` the fraction of resamples
    whose curve crosses. Bootstrap draws come from ``numpy.random.default_rng(seed)``.
    """
    if metric not in table:
        raise ValueError(f"metric: unknown column {metric!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for (d, n, act, meth), (ps, E) in _curves(table, metric).items():
        mean = np.nanmean(E, axis=0)
        thr = crossing(ps, mean, frac) if ps.size > 1 else math.nan
        boots = []
        if n_boot and E.shape[0] > 1 and ps.size > 1:
            idx = rng.integers(0, E.shape[0], size=(n_boot, E.shape[0]))
            boots = np.array([crossing(ps, np.nanmean(E[i], axis=0), frac) for i in idx])
        boots = np.asarray(boots, np.float64)
        ok = boots[np.isfinite(boots)] / (d * n)
        rows.append({
            "d": d, "n": n, "activation": act, "method": meth, "seeds": E.shape[0],
            "low_level": float(mean[0]), "threshold_p": thr, "threshold_p_over_dn": thr / (d * n),
            "boot_std": float(ok.std()) if ok.size > 1 else math.nan,
            "boot_lo": float(np.percentile(ok, 16)) if ok.size else math.nan,
            "boot_hi": float(np.percentile(ok, 84)) if ok.size else math.nan,
            "boot_found": float(ok.size / boots.size) if boots.size else math.nan,
        })
    return rows


def format_thresholds(rows: list[dict]) -> str:
    """The threshold table as text (the law says ``p*/(dn) ~ 1``)."""
    head = ("d", "n", "activation", "method", "p*/(dn)", "bootstrap 16-84%", "low-p error")
    cells = []
    for r in rows:
        cells.append((str(r["d"]), str(r["n"]), r["activation"], r["method"],
                      f"{r['threshold_p_over_dn']:.3g}" if np.isfinite(r["threshold_p_over_dn"]) else "not reached",
                      f"{r['boot_lo']:.3g}-{r['boot_hi']:.3g}" if np.isfinite(r["boot_lo"]) else "-",
                      f"{r['low_level']:.3g}"))
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    title = "threshold: p where the error first drops below half its low-p level (law: p*/(dn) ~ 1)"
    return "\n".join([title, line(head)] + [line(c) for c in cells])


def write_thresholds(path, rows: list[dict]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(THRESHOLD_COLUMNS)
        for r in rows:
            w.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in THRESHOLD_COLUMNS])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(path)
