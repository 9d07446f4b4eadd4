"""Figures and summaries of defence sweeps (:mod:`jaxrecon.defences` as a sweep axis).

:func:`defence_figure`: left, the reconstruction error (``error_sign``, median over seeds, bars
from the 25th to the 75th percentile) against ``p/(dn)``, one curve per strength; right, the
weakest strength that keeps the median error at or above ``level`` (the largest epsilon, bits or
steps for ``dp``, ``quantize``, ``early_stop``), against ``p/(dn)`` (interpolated
in log strength between the two strengths that bracket ``level``; missing where no strength
reaches it). :func:`strength_needed` computes the right panel's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io import atomic_write, versions


def _cells(table: dict):
    """``{(strength, p_over_dn): row indices}``, sorted."""
    cells: dict = {}
    for i, (s, r) in enumerate(zip(table["defence_strength"], table["p_over_dn"])):
        cells.setdefault((float(s), float(r)), []).append(i)
    return dict(sorted(cells.items()))


#: Kinds whose strength axis protects more as it *decreases* (epsilon, bits, steps).
DECREASING = ("dp", "quantize", "early_stop")


def strength_needed(table: dict, level: float = 0.1) -> dict:
    """``{p_over_dn: the weakest strength whose median error_sign >= level}``: the smallest
    strength, or the largest for the kinds of :data:`DECREASING` (log-interpolated between the
    strengths around the crossing; ``nan`` if none reaches ``level``; the weakest strength if
    even it does)."""
    cells = _cells(table)
    err = table["error_sign"]
    descending = len(table["defence"]) > 0 and str(table["defence"][0]) in DECREASING
    out = {}
    for r in sorted({k[1] for k in cells}):
        ss = sorted((s for s, rr in cells if rr == r), reverse=descending)
        med = [float(np.median(err[cells[(s, r)]])) for s in ss]
        need = float("nan")
        for j, (s, e) in enumerate(zip(ss, med)):
            if e >= level:
                if j == 0:
                    need = s
                else:
                    s0, e0 = ss[j - 1], med[j - 1]
                    t = (np.log(level) - np.log(max(e0, 1e-300))) / (np.log(e) - np.log(max(e0, 1e-300)))
                    need = float(np.exp(np.log(s0) + t * (np.log(s) - np.log(s0)))) if s0 > 0 else s
                break
        out[r] = need
    return out


def defence_figure(table: dict, path, level: float = 0.1, title: str | None = None):
    """Write the two-panel figure of a defence sweep to ``path`` (png); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = str(table["defence"][0]) if len(table["defence"]) else "none"
    cells = _cells(table)
    err = table["error_sign"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for s in sorted({k[0] for k in cells}):
        rs = sorted(r for ss, r in cells if ss == s)
        q = np.array([np.percentile(err[cells[(s, r)]], [25, 50, 75]) for r in rs])
        ax.errorbar(rs, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], marker="o", capsize=3,
                    label=f"{s:g}")
    ax.axhline(level, color="grey", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="p / (d n)", ylabel="error_sign (median, IQR)")
    ax.legend(title=f"{kind} strength", fontsize=8)
    need = strength_needed(table, level)
    bx.plot(list(need), list(need.values()), marker="s")
    which = "largest" if kind in DECREASING else "smallest"
    bx.set(xscale="log", yscale="log", xlabel="p / (d n)", ylabel=f"{which} strength with median error >= {level:g}")
    fig.suptitle(title or f"defence: {kind}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarize(table: dict, level: float = 0.1) -> dict:
    """Per (strength, p/(dn)): median and quartiles of ``error_sign``, the stop reasons, median
    loss and floor, steps; and :func:`strength_needed`."""
    cells = []
    for (s, r), idx in _cells(table).items():
        e = table["error_sign"][idx]
        status, counts = np.unique(table["status"][idx], return_counts=True)
        cells.append({"strength": s, "p_over_dn": r, "seeds": len(idx),
                      "error_sign": [float(v) for v in np.percentile(e, [25, 50, 75])],
                      "status": {str(k): int(c) for k, c in zip(status, counts)},
                      "loss_median": float(np.median(table["loss"][idx])),
                      "floor_median": float(np.nanmedian(table["floor"][idx])) if np.any(np.isfinite(table["floor"][idx])) else None,
                      "steps_median": float(np.median(table["steps"][idx]))})
    kind = str(table["defence"][0]) if len(table["defence"]) else "none"
    return {"defence": kind, "level": level, "cells": cells,
            "strength_needed": {str(k): v for k, v in strength_needed(table, level).items()}}


def write_summary(table: dict, path, level: float = 0.1) -> None:
    """:func:`summarize` as JSON (with versions) at ``path``."""
    blob = json.dumps({**summarize(table, level), "versions": versions()}, indent=1, default=str)
    atomic_write(Path(path), lambda f: f.write(blob))
