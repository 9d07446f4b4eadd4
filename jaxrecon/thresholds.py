"""The headline number of a sweep: where reconstruction sets in, in units of ``d * n``.

Two estimators per curve (one ``(d, n, activation, method)``); the law predicts ``p*/(dn) ~ 1``
(counting: ``p - n`` equations for ``n (d - 1)`` unknowns on the sphere).

* **Error crossing** (:func:`crossing`): the error is averaged over seeds at every ``p``; its *low-p
  level* is the mean error at the smallest ``p`` of the grid; ``p*`` is the first ``p`` where the
  mean error falls below ``frac`` (default 1/2) of that level, interpolated linearly in ``log p``
  between the two grid points around the crossing. Spread: 16th/84th bootstrap percentiles.
* **Logistic fit** (:func:`fit_logistic`): ``P(identified) = 1 / (1 + exp(-(log(p/(dn)) - m) / s))``
  fitted by maximum likelihood to every seed's 0/1 ``identified`` (``error_sign <= 1e-3``); the
  threshold is the 1/2 crossing ``p*/(dn) = exp(m)`` and the width of the transition is the scale
  ``s`` (in ``log p``; P goes from 10 % to 90 % over ``2 ln 9 s ~ 4.4 s``), each with a 95 %
  bootstrap interval (2.5th/97.5th percentiles).

Bootstraps resample seeds with replacement: each seed is a whole curve (its data and features are
shared across ``p``), so its rows at every ``p`` move together.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy.special import expit

#: Columns of ``thresholds.csv``. ``logit_*``: the logistic fit (``p_over_dn`` its 1/2 crossing,
#: ``width`` its scale ``s``, ``lo``/``hi`` 95 % bootstrap intervals, ``found`` the fraction of
#: resamples with a crossing, ``separated`` 1 when the outcomes are perfectly separated in ``p`` so
#: the fitted width is set by the ridge: read it as "sharper than the grid resolves").
THRESHOLD_COLUMNS = ("d", "n", "activation", "method", "seeds", "low_level", "threshold_p",
                     "threshold_p_over_dn", "boot_std", "boot_lo", "boot_hi", "boot_found",
                     "logit_p_over_dn", "logit_lo", "logit_hi", "logit_width", "logit_width_lo",
                     "logit_width_hi", "logit_found", "logit_separated")
#: Ridge on the intercept and the standardised slope of the logistic fit (see :func:`fit_logistic`).
LOGIT_RIDGE = 1e-3


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


def _logistic_newton(z, y, w, ridge: float, iters: int = 100):
    """Penalised maximum likelihood of ``P(y = 1) = sigmoid(a + b z)``, batched over rows of ``w``.

    ``z``, ``y``: ``(N,)``; ``w``: ``(B, N)`` non-negative weights (bootstrap counts). Minimises

        f(a, b) = sum_i w_i [softplus(eta_i) - y_i eta_i] + ridge/2 (a^2 + b^2),   eta = a + b z,

    which is strictly convex, by Newton steps with Armijo backtracking from ``(0, 0)``; stops when
    every row's Newton decrement is below ``1e-12``. Returns ``(a, b)``, each ``(B,)``.
    """
    Z = np.stack([np.ones_like(z), z], axis=1)  # (N, 2)

    def f(th):
        eta = th @ Z.T
        return np.sum(w * (np.logaddexp(0.0, eta) - y * eta), axis=1) + 0.5 * ridge * np.sum(th * th, axis=1)

    th = np.zeros((w.shape[0], 2))
    fx = f(th)
    for _ in range(iters):
        pr = expit(th @ Z.T)
        g = (w * (pr - y)) @ Z + ridge * th
        h = np.einsum("bn,ni,nj->bij", w * pr * (1 - pr), Z, Z) + ridge * np.eye(2)
        step = np.linalg.solve(h, g[..., None])[..., 0]
        dec = np.sum(g * step, axis=1)  # Newton decrement squared, >= 0
        active = dec > 1e-12
        if not active.any():
            break
        t = np.ones(w.shape[0])
        for _ in range(50):
            trial = th - t[:, None] * step
            ft = f(trial)
            ok = active & (ft <= fx - 1e-4 * t * dec)
            th[ok], fx[ok] = trial[ok], ft[ok]
            active &= ~ok
            if not active.any():
                break
            t = np.where(active, 0.5 * t, t)
    return th[:, 0], th[:, 1]


def fit_logistic(x, y, weights=None, ridge: float = LOGIT_RIDGE):
    """Maximum-likelihood fit of ``P(y = 1 | x) = 1 / (1 + exp(-(x - m) / s))`` to 0/1 outcomes.

    Args:
      x, y: ``(N,)`` positions and 0/1 outcomes.
      weights: ``(N,)`` or ``(B, N)`` non-negative weights (a batch of bootstrap replicates);
        default: one each.
      ridge: penalty ``ridge/2 (a^2 + b^2)`` on the intercept and slope of the fit in the
        standardised ``z = (x - mean) / std`` (of the distinct ``x``). It is tiny against the
        likelihood of a few dozen outcomes, and keeps perfectly separated outcomes (where the
        maximum-likelihood slope is infinite) finite: the slope then grows like ``log(1/ridge)``
        over the gap between the classes, so ``s`` only says "sharper than the grid resolves".

    Returns:
      ``(m, s)``: the 1/2 crossing and the scale (floats, or ``(B,)`` arrays for 2-D weights);
      ``nan`` where the (weighted) outcomes are all equal or the fitted slope is not positive.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"y: must be a vector matching x, got shapes {x.shape} and {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y: must hold only 0 and 1")
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    single = w.ndim == 1
    w = np.atleast_2d(w)
    if w.shape[1:] != x.shape or np.any(w < 0):
        raise ValueError(f"weights: must be non-negative, of shape {x.shape} or (B, {x.size})")
    grid = np.unique(x)
    center, sd = (grid.mean(), grid.std()) if grid.size > 1 else (0.0, 0.0)
    m = s = np.full(w.shape[0], math.nan)
    if sd > 0:
        a, b = _logistic_newton((x - center) / sd, y, w, ridge)
        both = ((w * y).sum(axis=1) > 0) & ((w * (1 - y)).sum(axis=1) > 0)
        ok = both & (b > 0)
        m = np.where(ok, center - a * sd / np.where(ok, b, 1.0), math.nan)
        s = np.where(ok, sd / np.where(ok, b, 1.0), math.nan)
    return (float(m[0]), float(s[0])) if single else (m, s)


def _separated(x, y) -> bool:
    """Every 0 lies below every 1 (the maximum-likelihood slope would be infinite)."""
    return bool(np.any(y == 0) and np.any(y == 1) and x[y == 0].max() < x[y == 1].min())


def _logistic_fields(ps, ident, dn: int, n_boot: int, rng) -> dict:
    """The ``logit_*`` fields of a curve: ``ident`` is ``(seeds, P)`` 0/1 (``nan``: missing)."""
    S = ident.shape[0]
    x = np.broadcast_to(np.log(ps / dn), ident.shape)
    seed = np.broadcast_to(np.arange(S)[:, None], ident.shape)
    keep = np.isfinite(ident)
    x, y, seed = x[keep], ident[keep], seed[keep]
    m, s = fit_logistic(x, y) if x.size else (math.nan, math.nan)
    out = {"logit_p_over_dn": math.exp(m) if np.isfinite(m) else math.nan, "logit_width": s,
           "logit_lo": math.nan, "logit_hi": math.nan, "logit_width_lo": math.nan,
           "logit_width_hi": math.nan, "logit_found": math.nan, "logit_separated": int(_separated(x, y))}
    if n_boot and S > 1 and x.size:
        draws = rng.integers(0, S, size=(n_boot, S))
        counts = np.stack([np.bincount(r, minlength=S) for r in draws])
        bm, bs = fit_logistic(x, y, counts[:, seed])
        ok = np.isfinite(bm)
        out["logit_found"] = float(ok.mean())
        if ok.any():
            out["logit_lo"], out["logit_hi"] = (float(v) for v in np.exp(np.percentile(bm[ok], [2.5, 97.5])))
            out["logit_width_lo"], out["logit_width_hi"] = (float(v) for v in np.percentile(bs[ok], [2.5, 97.5]))
    return out


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
    """One row per ``(d, n, activation, method)``: both thresholds and their bootstrap spreads
    (columns :data:`THRESHOLD_COLUMNS`).

    Error crossing of ``metric``: ``boot_std`` is the standard deviation of the bootstrap
    thresholds, ``boot_lo``/``boot_hi`` their 16th/84th percentiles (in units of ``d n``),
    ``boot_found`` the fraction of resamples whose curve crosses; draws come from
    ``numpy.random.default_rng(seed)``. Logistic fit of the ``identified`` column (derived from
    ``error_sign`` when absent; all ``nan`` when neither is in the table): ``logit_*``, with draws
    from ``numpy.random.default_rng([seed, 1])``.
    """
    if metric not in table:
        raise ValueError(f"metric: unknown column {metric!r}")
    rng, rng_logit = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    outcome = _identified_table(table)
    ident = _curves(outcome, "identified") if outcome is not None else {}
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
        if (d, n, act, meth) in ident:
            ps_i, I = ident[(d, n, act, meth)]
            rows[-1].update(_logistic_fields(ps_i, I, d * n, n_boot, rng_logit))
        else:
            rows[-1].update(_logistic_fields(ps, np.full((0, ps.size), np.nan), d * n, 0, rng_logit))
    return rows


def _identified_table(table):
    """``table`` with a float ``identified`` column (derived from ``error_sign`` when missing);
    ``None`` when it has neither."""
    if "identified" in table:
        return {**table, "identified": np.asarray(table["identified"], np.float64)}
    if "error_sign" in table:
        from .outcomes import identified

        return {**table, "identified": identified(table["error_sign"]).astype(np.float64)}
    return None


def format_thresholds(rows: list[dict]) -> str:
    """The threshold table as text (the law says ``p*/(dn) ~ 1``)."""
    head = ("d", "n", "activation", "method", "p*/(dn)", "bootstrap 16-84%", "low-p error",
            "logistic p*/(dn) [95%]", "width s [95%]")
    g = lambda v: f"{v:.3g}" if np.isfinite(v) else "-"
    cells = []
    for r in rows:
        lo, hi, wlo, whi = (r.get(k, math.nan) for k in ("logit_lo", "logit_hi", "logit_width_lo", "logit_width_hi"))
        cells.append((str(r["d"]), str(r["n"]), r["activation"], r["method"],
                      f"{r['threshold_p_over_dn']:.3g}" if np.isfinite(r["threshold_p_over_dn"]) else "not reached",
                      f"{r['boot_lo']:.3g}-{r['boot_hi']:.3g}" if np.isfinite(r["boot_lo"]) else "-",
                      f"{r['low_level']:.3g}",
                      f"{g(r.get('logit_p_over_dn', math.nan))} [{g(lo)}, {g(hi)}]",
                      f"{g(r.get('logit_width', math.nan))} [{g(wlo)}, {g(whi)}]"
                      + (" separated" if r.get("logit_separated") else "")))
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    title = ("threshold: p where the error first drops below half its low-p level, and the 1/2 crossing of a "
             "logistic fit of P(identified) in log p with its scale s (law: p*/(dn) ~ 1)")
    return "\n".join([title, line(head)] + [line(c) for c in cells])


def write_thresholds(path, rows: list[dict]) -> None:
    """Write ``rows`` to ``path`` atomically (a uniquely named temporary file beside it, renamed:
    :func:`jaxrecon.io.atomic_write`, whose ``OSError`` names ``path``)."""
    from .io import atomic_write

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(THRESHOLD_COLUMNS)
        for r in rows:
            w.writerow([repr(r[c]) if isinstance(r[c], float) else r[c] for c in THRESHOLD_COLUMNS])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
