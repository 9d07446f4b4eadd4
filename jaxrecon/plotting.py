"""Figures of a sweep (paper Figs. 1 left, 2 and 3), from a results table.

Every function takes the table returned by :func:`jaxrecon.sweep` or
:func:`jaxrecon.sweeps.read_results` (a dict of NumPy arrays keyed by column) and returns a
:class:`matplotlib.figure.Figure` (no pyplot state, so they work in scripts and notebooks alike);
``path`` also saves it.

* :func:`plot_law` -- error (red) and training loss (black) vs ``p`` on a log axis, mean and a
  +-1 std band across seeds, one panel per ``(d, n)``; dotted lines at ``p = n`` and ``p = d n``.
* :func:`plot_residuals` -- error and mean span residual ``|P_perp phi(x_i)| / sqrt(p)`` vs ``p``.
* :func:`plot_collapse` -- error vs ``p / (d n)`` for every ``(d, n)`` on one axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

ERROR_COLOR = "#c0392b"
LOSS_COLOR = "black"
RESIDUAL_COLOR = "#1f5fa8"


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
    if path is not None:
        path = Path(path)
        fig.savefig(path, dpi=130)
        for s in extra_suffixes:
            fig.savefig(path.with_suffix(s))


def _error_and_twin_panels(table, metric, twin, twin_color, twin_label, twin_ylabel, error_legend,
                           twin_legend, color_twin_axis):
    """One panel per ``(d, n)``: error vs ``p`` (left axis) and ``twin`` vs ``p`` (right axis)."""
    _check(table)
    keys = _curve_keys(table)
    cols = _columns(len(keys))
    fig = Figure(figsize=(4.6 * cols, 3.5 * math.ceil(len(keys) / cols)), layout="constrained")
    for ax, key in zip(_grid_axes(fig, len(keys)), keys):
        d, n = key[0], key[1]
        p, m, s = curve(table, key, metric)
        _band(ax, p, m, s, ERROR_COLOR, "reconstruction error", lower=0)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("p (number of features)")
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
    handles = [
        _line(ERROR_COLOR, "-", "o", error_legend),
        _line(twin_color, "-", "o", twin_legend),
        _line("0.45", ":", None, "p = n"),
        _line("0.45", "--", None, "p = d·n"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    return fig


def plot_law(table, path=None, metric: str = "error_abs") -> Figure:
    """Error and training loss vs ``p`` (paper Figs. 1 left and 3); saves ``path`` (and a .pdf)."""
    fig = _error_and_twin_panels(table, metric, "train_loss", LOSS_COLOR, "training loss",
                                 "training loss (MSE)", "error (mean ± std over seeds)",
                                 "training loss", color_twin_axis=False)
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


def plot_all(table, out) -> list[str]:
    """Write ``law.png``, ``law.pdf``, ``residuals.png`` and ``collapse.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_law(table, out / "law.png")
    plot_residuals(table, out / "residuals.png")
    plot_collapse(table, out / "collapse.png")
    return ["law.png", "law.pdf", "residuals.png", "collapse.png"]
