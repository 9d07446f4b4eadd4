"""Figures of a sweep (paper Figs. 1 left, 2 and 3), from a results table.

Every function takes the table returned by :func:`jaxrecon.sweep` or
:func:`jaxrecon.sweeps.read_results` (a dict of NumPy arrays keyed by column) and returns a
:class:`matplotlib.figure.Figure` (no pyplot state, so they work in scripts and notebooks alike);
``path`` also saves it.

* :func:`plot_law` -- error (red) and training loss (black) vs ``p`` on a log axis, mean and a
  +-1 std band across seeds, one panel per ``(d, n)``; dotted lines at ``p = n`` and ``p = d n``.
  Below each, P(solved) and P(identified | solved) vs ``p / (d n)`` (see :mod:`jaxrecon.outcomes`).
* :func:`plot_residuals` -- error and mean span residual ``|P_perp phi(x_i)| / sqrt(p)`` vs ``p``.
* :func:`plot_collapse` -- error vs ``p / (d n)`` for every ``(d, n)`` on one axis.
* :func:`finite_size_figure` -- the threshold ``p*/(dn)`` (logistic fit, 95 % interval) and the
  width of the transition against ``d n``: does the transition sharpen, and where does it go?
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

ERROR_COLOR = "#c0392b"
LOSS_COLOR = "black"
RESIDUAL_COLOR = "#1f5fa8"
SOLVED_COLOR = "#1f5fa8"
IDENTIFIED_COLOR = "#1e8449"


def _curve_keys(table):
    return sorted(set(zip(table["d"].tolist(), table["n"].tolist(), table["activation"].tolist(),
                          table["method"].tolist())))


def curve(table, key, column):
    """``(p, mean, std)`` of ``column`` across seeds for one ``(d, n, activation, method)``."""
    d, n, act, meth = key
    sel = (table["d"] == d) & (table["n"] == n) & (table["activation"] == act) & (table["method"] == meth)
    ps = np.unique(table["p"][sel])
    vals = [table[column][sel & (table["p"] == p)].astype(np.float64) for p in ps]
    vals = [v[np.isfinite(v)] for v in vals]  # a seed whose attack hit a non-finite loss is left out
    mean = np.array([v.mean() if v.size else np.nan for v in vals])
    std = np.array([v.std() if v.size else np.nan for v in vals])
    return ps, mean, std


def _check(table):
    if not table or len(table.get("p", ())) == 0:
        raise ValueError("table: no results to plot")


def _columns(k):
    return 2 if k in (2, 4) else min(k, 3)


def _grid_axes(fig, k):
    cols = _columns(k)
    rows = math.ceil(k / cols)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[k:]:
        ax.set_visible(False)
    return axes.flat[:k]


def _grid_axis_pairs(fig, k):
    """``k`` pairs ``(main, below)``: each curve's panel with a shorter one under it."""
    cols = _columns(k)
    rows = math.ceil(k / cols)
    axes = fig.subplots(2 * rows, cols, squeeze=False, height_ratios=[1.0, 0.62] * rows)
    for i in range(k, rows * cols):
        axes[2 * (i // cols), i % cols].set_visible(False)
        axes[2 * (i // cols) + 1, i % cols].set_visible(False)
    return [(axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]) for i in range(k)]


def _outcome_columns(table):
    """``(solved, identified)`` boolean arrays of a table (derived from ``loss`` / ``error_sign``
    with float32 tolerances where the table lacks them)."""
    from .outcomes import identified, method_tolerance, solved

    if "solved" in table:
        sol = np.asarray(table["solved"], bool)
    else:
        tol = np.array([method_tolerance(m) for m in table["method"].tolist()])
        sol = solved(table["loss"], tol)
    ide = np.asarray(table["identified"], bool) if "identified" in table else identified(table["error_sign"])
    return sol, ide


def outcome_curve(table, key):
    """``(p, P(solved), P(identified | solved), P(identified))`` across seeds for one
    ``(d, n, activation, method)``; ``P(identified | solved)`` is ``nan`` where no seed solved."""
    d, n, act, meth = key
    sel = (table["d"] == d) & (table["n"] == n) & (table["activation"] == act) & (table["method"] == meth)
    sol, ide = _outcome_columns(table)
    ps = np.unique(table["p"][sel])
    ps_sel = [sel & (table["p"] == p) for p in ps]
    p_sol = np.array([sol[m].mean() for m in ps_sel])
    p_id_sol = np.array([ide[m & sol].mean() if (m & sol).any() else np.nan for m in ps_sel])
    p_id = np.array([ide[m].mean() for m in ps_sel])
    return ps, p_sol, p_id_sol, p_id


def _outcome_panel(ax, table, key, xlim):
    """P(solved) and P(identified | solved) vs ``p/(dn)`` under a curve's panel (same x range)."""
    d, n = key[0], key[1]
    p, p_sol, p_id_sol, _ = outcome_curve(table, key)
    r = p / (d * n)
    ax.plot(r, p_sol, "o-", color=SOLVED_COLOR, lw=1.6, ms=4)
    ax.plot(r, p_id_sol, "s--", color=IDENTIFIED_COLOR, lw=1.6, ms=4)
    ax.set_xscale("log")
    ax.set_xlim(xlim[0] / (d * n), xlim[1] / (d * n))
    ax.set_ylim(-0.04, 1.04)
    ax.axvline(1.0, color="0.45", ls="--", lw=1.2)
    ax.axvline(1.0 / d, color="0.45", ls=":", lw=1.2)
    ax.set_xlabel("p / (d·n)")
    ax.set_ylabel("fraction of seeds")
    ax.grid(axis="y", color="0.9", lw=0.8)


def _title(key, keys):
    d, n, act, meth = key
    extra = []
    if len({k[2] for k in keys}) > 1:
        extra.append(act)
    if len({k[3] for k in keys}) > 1:
        extra.append(meth)
    return f"d = {d}, n = {n}" + (f" ({', '.join(extra)})" if extra else "")


def _band(ax, x, mean, std, color, label, lower=None, alpha=0.18):
    ax.plot(x, mean, "o-", color=color, lw=1.8, ms=4, label=label)
    lo = mean - std if lower is None else np.maximum(mean - std, lower)
    ax.fill_between(x, lo, mean + std, color=color, alpha=alpha, lw=0)


def _vlines(ax, d, n, scale=1.0):
    ax.axvline(n / scale, color="0.45", ls=":", lw=1.2)
    ax.axvline(d * n / scale, color="0.45", ls="--", lw=1.2)


def _save(fig, path, *extra_suffixes):
    """Save ``fig`` to ``path`` (and the same name with ``extra_suffixes``), each file written to a
    uniquely named temporary file beside it and renamed into place (:func:`jaxrecon.io.atomic_write`):
    concurrent writers never share a temporary file, a reader never sees half a figure, and an
    ``OSError`` (a full disk) names the figure's path."""
    if path is not None:
        from .io import atomic_write

        path = Path(path)
        for target in [path] + [path.with_suffix(s) for s in extra_suffixes]:
            fmt = target.suffix.lstrip(".").lower() or "png"
            atomic_write(target, lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=130), mode="wb")


def _error_and_twin_panels(table, metric, twin, twin_color, twin_label, twin_ylabel, error_legend,
                           twin_legend, color_twin_axis, outcomes=False):
    """One panel per ``(d, n)``: error vs ``p`` (left axis) and ``twin`` vs ``p`` (right axis);
    ``outcomes``: with P(solved) and P(identified | solved) in a panel below each."""
    _check(table)
    keys = _curve_keys(table)
    cols = _columns(len(keys))
    rows = math.ceil(len(keys) / cols)
    width = 4.6 * cols if cols > 1 else 7.2  # one panel: room for its legend
    fig = Figure(figsize=(width, (5.6 if outcomes else 3.5) * rows), layout="constrained")
    pairs = _grid_axis_pairs(fig, len(keys)) if outcomes else [(a, None) for a in _grid_axes(fig, len(keys))]
    # a network sweep counts p as the head's parameters; an off-span target (all layers trained, a
    # defence) has a floor L(X) > 0 under the loss: its square root is drawn beside the error
    network = "params_total" in table and np.any(np.asarray(table["params_total"]) > np.asarray(table["p"]))
    at_truth = np.asarray(table["loss_at_truth"], float) if "loss_at_truth" in table else None
    floor = at_truth is not None and np.nanmax(np.append(at_truth, 0.0)) > 1e-10
    for (ax, below), key in zip(pairs, keys):
        d, n = key[0], key[1]
        p, m, s = curve(table, key, metric)
        _band(ax, p, m, s, ERROR_COLOR, "reconstruction error", lower=0)
        if floor:
            pf, mf, _ = curve(table, key, "loss_at_truth")
            ax.plot(pf, np.sqrt(np.maximum(mf, 0.0)), "--", color=ERROR_COLOR, lw=1.2, alpha=0.8)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("p (head parameters)" if network else "p (number of features)")
        ax.set_ylabel("reconstruction error", color=ERROR_COLOR)
        ax.tick_params(axis="y", colors=ERROR_COLOR)
        ax2 = ax.twinx()
        p, m, s = curve(table, key, twin)
        _band(ax2, p, m, s, twin_color, twin_label, lower=0)
        ax2.set_ylim(bottom=0)
        if color_twin_axis:
            ax2.set_ylabel(twin_ylabel, color=twin_color)
            ax2.tick_params(axis="y", colors=twin_color)
        else:
            ax2.set_ylabel(twin_ylabel)
        _vlines(ax, d, n)
        ax.set_title(_title(key, keys))
        if below is not None:
            _outcome_panel(below, table, key, ax.get_xlim())
    handles = [
        _line(ERROR_COLOR, "-", "o", error_legend),
        _line(twin_color, "-", "o", twin_legend),
        _line("0.45", ":", None, "p = n"),
        _line("0.45", "--", None, "p = d·n (counting)" if outcomes else "p = d·n"),
    ]
    if floor:
        handles.insert(1, _line(ERROR_COLOR, "--", None, "√L(X): the loss at the training set (floor)"))
    if outcomes:
        handles[2:2] = [_line(SOLVED_COLOR, "-", "o", "P(solved): loss ≤ tolerance"),
                        _line(IDENTIFIED_COLOR, "--", "s", "P(identified | solved): error_sign ≤ 1e-3")]
    ncols = 2 if cols == 1 else (3 if outcomes else 4)  # one panel: a legend that fits under it
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, frameon=False)
    return fig


def plot_law(table, path=None, metric: str = "error_abs") -> Figure:
    """Error and training loss vs ``p`` (paper Figs. 1 left and 3), with P(solved) and
    P(identified | solved) vs ``p / (d n)`` under each panel; saves ``path`` (and a .pdf)."""
    fig = _error_and_twin_panels(table, metric, "train_loss", LOSS_COLOR, "training loss",
                                 "training loss (MSE)", "error (mean ± std over seeds)",
                                 "training loss", color_twin_axis=False, outcomes=True)
    _save(fig, path, ".pdf")
    return fig


def _line(color, ls, marker, label):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, ls=ls, marker=marker, ms=4, label=label)


def plot_residuals(table, path=None, metric: str = "error_abs") -> Figure:
    """Error and mean span residual vs ``p`` (paper Fig. 2), one panel per ``(d, n)``."""
    fig = _error_and_twin_panels(table, metric, "residual", RESIDUAL_COLOR, "span residual",
                                 "mean span residual  |P⊥φ(xᵢ)|/√p", "error (mean ± std)",
                                 "span residual of the training features", color_twin_axis=True)
    _save(fig, path)
    return fig


def plot_collapse(table, path=None, metric: str = "error_abs") -> Figure:
    """Error vs ``p / (d n)`` for every ``(d, n)`` on one axis: the curves collapse."""
    _check(table)
    keys = _curve_keys(table)
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    colors = _colors(len(keys))
    for c, key in zip(colors, keys):
        d, n = key[0], key[1]
        p, m, s = curve(table, key, metric)
        label = _title(key, keys).replace("d = ", "d=").replace("n = ", "n=")
        _band(ax, p / (d * n), m, s, c, label, lower=0, alpha=0.1)
    ax.axvline(1.0, color="0.45", ls="--", lw=1.2, label="p = d·n")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("p / (d·n)")
    ax.set_ylabel("reconstruction error (mean ± std over seeds)")
    ax.set_title("error vs parameters per unknown")
    ax.legend(frameon=False, fontsize="small")
    _save(fig, path)
    return fig


def _colors(k):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(k - 1, 1)) for i in range(k)]


def _threshold_series(rows):
    """Threshold rows grouped by ``(activation, method)``, each sorted by ``d n``."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["activation"], r["method"]), []).append(r)
    return {k: sorted(v, key=lambda r: (r["d"] * r["n"], r["d"])) for k, v in sorted(groups.items())}


def _errorbar(ax, x, mid, lo, hi, **kw):
    mid, lo, hi = (np.asarray(v, np.float64) for v in (mid, lo, hi))
    yerr = np.stack([np.where(np.isfinite(lo), mid - lo, 0), np.where(np.isfinite(hi), hi - mid, 0)])
    ax.errorbar(x, mid, yerr=np.maximum(yerr, 0), capsize=3, lw=1.4, ms=5, **kw)


def finite_size_figure(table, path=None, thresholds=None) -> Figure:
    """The finite-size study: threshold and transition width against ``d n`` (log x).

    Top: ``p*/(dn)``, the 1/2 crossing of the logistic fit of P(identified) with its 95 % bootstrap
    interval (filled), and the error-crossing threshold (open); the counting prediction
    ``p*/(dn) = 1`` dashed. Bottom: the logistic scale ``s`` (in ``log p``) with its 95 % interval;
    a downward triangle marks perfectly separated outcomes (the width is below what the grid
    resolves). One series per ``(activation, method)``; each point labelled ``(d, n)``. Each
    panel's legend names its markers (the triangle only where one is drawn), the x label the ``(d, n)``
    labels.

    ``thresholds``: rows of :func:`jaxrecon.estimate_thresholds` for ``table`` (computed here when
    ``None``, with 1000 bootstrap resamples). When no curve reaches a threshold, the axes span the
    grid's ``d n`` and say so.
    """
    _check(table)
    if thresholds is None:
        from .thresholds import estimate_thresholds

        thresholds = estimate_thresholds(table)
    series = _threshold_series(thresholds)
    every_dn = [r["d"] * r["n"] for r in thresholds]
    reached = any(np.isfinite(r.get(k, math.nan)) for r in thresholds
                  for k in ("logit_p_over_dn", "threshold_p_over_dn"))
    fig = Figure(figsize=(6.4, 6.2), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.2, 1.0])
    for c, (key, rows) in zip(_colors(len(series)), series.items()):
        label = f"{key[0]}, {key[1]}" if len(series) > 1 else None
        dn = np.array([r["d"] * r["n"] for r in rows], np.float64)
        get = lambda k: np.array([r.get(k, math.nan) for r in rows], np.float64)
        _errorbar(top, dn, get("logit_p_over_dn"), get("logit_lo"), get("logit_hi"), color=c, fmt="o-",
                  label=label)
        top.plot(dn, get("threshold_p_over_dn"), "o", mfc="none", color=c, ms=7)
        _errorbar(bottom, dn, get("logit_width"), get("logit_width_lo"), get("logit_width_hi"), color=c, fmt="o-")
        sep = get("logit_separated") > 0
        bottom.plot(dn[sep], get("logit_width")[sep], "v", color=c, ms=9, mfc="none")
        for x, y, r in zip(dn, get("logit_p_over_dn"), rows):
            if np.isfinite(y):
                top.annotate(f"({r['d']}, {r['n']})", (x, y), xytext=(4, 4), textcoords="offset points",
                             fontsize="x-small", color="0.3")
    top.axhline(1.0, color="0.45", ls="--", lw=1.2)
    if not reached:  # nothing to place on the axes: span the grid's d n, and say so
        top.set_xlim(min(every_dn) / 1.5, max(every_dn) * 1.5)
        top.set_ylim(0.5, 1.5)
        for ax, text in ((top, "no threshold reached in this grid\n(no curve crosses; extend p or the steps)"),
                         (bottom, "no transition width: no threshold reached")):
            ax.text(0.5, 0.3, text, transform=ax.transAxes, ha="center", va="center", color="0.3")
    top.set_xscale("log")
    top.margins(x=0.15)
    any_separated = any(r.get("logit_separated", 0) > 0 for r in thresholds)
    lo, hi = top.get_ylim()
    top.set_ylim(min(lo, 0.9), max(hi, 1.1))
    top.set_ylabel("threshold p*/(d·n)")
    top.set_title("where identification sets in, and how sharply")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("d·n (unknowns); a point labelled (d, n) has input dimension d and n samples")
    bottom.set_ylabel("transition width s (in log p)")
    handles = [_line("0.3", "-", "o", "logistic 1/2 crossing of P(identified), 95 % CI"),
               _line("0.3", "none", "o", "error drops below half its low-p level"),
               _line("0.45", "--", None, "counting: p = d·n")]
    handles[1].set_markerfacecolor("none")
    if len(series) > 1:
        handles += top.get_legend_handles_labels()[0]
    top.legend(handles=handles, frameon=False, fontsize="small")
    width_handles = [_line("0.3", "-", "o", "logistic scale s of P(identified), 95 % CI")]
    if any_separated:
        width_handles.append(_line("0.3", "none", "v",
                                   "outcomes perfectly separated: s is below what the grid resolves"))
        width_handles[-1].set_markerfacecolor("none")
    bottom.legend(handles=width_handles, frameon=False, fontsize="small")
    _save(fig, path)
    return fig


def plot_all(table, out, thresholds=None) -> list[str]:
    """Write ``law.png``, ``law.pdf``, ``residuals.png`` and ``collapse.png`` into ``out``, and
    ``finite_size.png`` (:func:`finite_size_figure`, from ``thresholds`` when given) when the
    table has at least two ``(d, n)`` curves."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_law(table, out / "law.png")
    plot_residuals(table, out / "residuals.png")
    plot_collapse(table, out / "collapse.png")
    files = ["law.png", "law.pdf", "residuals.png", "collapse.png"]
    if len(set(zip(table["d"].tolist(), table["n"].tolist()))) >= 2:
        finite_size_figure(table, out / "finite_size.png", thresholds=thresholds)
        files.append("finite_size.png")
    return files
