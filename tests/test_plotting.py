"""Figures and the `jaxrecon plot` command, on a synthetic results table (no attack runs)."""

import math

import numpy as np
import pytest

from jaxrecon.cli import main
from jaxrecon.plotting import (curve, finite_size_figure, outcome_curve, plot_all, plot_collapse, plot_law,
                               plot_residuals)
from jaxrecon.sweeps import COLUMNS, read_results, rows_text, table_rows, to_table
from jaxrecon.thresholds import estimate_thresholds


def _table(seeds=3):
    rng = np.random.default_rng(0)
    rows = []
    for d, n in [(10, 4), (20, 5)]:
        for r in [0.05, 0.25, 1, 2, 4, 8]:
            p = max(1, round(r * d * n))
            for s in range(seeds):
                err = 0.75 / (1 + (r / 1.5) ** 4) + 0.02 * rng.random()
                rows.append({"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "activation": "relu",
                             "method": "adam", "seed": s, "train_loss": max(0.0, 0.5 * (1 - p / n)),
                             "loss": 0.0, "error_abs": err, "error_sign": err, "residual": err / 2,
                             "recovered": float(err < 0.01), "steps": 100, "status": "budget",
                             "seconds": 0.1, "compile_seconds": 0.0})
    return to_table(rows)


def test_curve_mean_and_std():
    t = _table()
    p, m, s = curve(t, (10, 4, "relu", "adam"), "error_abs")
    assert p.tolist() == sorted(set(p.tolist())) and len(p) == 6
    assert np.all(s >= 0) and m[0] > 0.6 > 0.1 > m[-1]


def test_figures_are_written_and_non_empty(tmp_path):
    files = plot_all(_table(), tmp_path)
    # two (d, n) curves: the finite-size figure too
    assert set(files) == {"law.png", "law.pdf", "residuals.png", "collapse.png", "finite_size.png"}
    for f in files:
        assert (tmp_path / f).stat().st_size > 10_000, f
    # each function also returns a Figure with one panel per (d, n) (+ twin axes); the law figure
    # has a P(solved) / P(identified | solved) panel under each
    assert len(plot_law(_table()).axes) == 6
    assert len(plot_residuals(_table()).axes) == 4
    assert len(plot_collapse(_table()).axes) == 1


def test_plot_command_reads_results_and_writes_thresholds(tmp_path, capsys):
    rows = table_rows(_table())
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n" + rows_text(rows) + "10,4,3")  # torn tail
    table = read_results(tmp_path)
    assert len(table["p"]) == len(rows)
    assert main(["plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "p*/(dn)" in out and "law.png" in out
    thr = (tmp_path / "thresholds.csv").read_text().splitlines()
    assert len(thr) == 3 and thr[0].startswith("d,n,activation,method")
    est = [float(line.split(",")[7]) for line in thr[1:]]
    assert all(1.0 < e < 2.5 for e in est)  # the synthetic curves halve near p/(dn) = 1.5
    for f in ("law.png", "law.pdf", "residuals.png", "collapse.png", "finite_size.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "logistic p*/(dn)" in out and "logit_p_over_dn" in thr[0]


def test_plot_bad_input(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "results: no results file" in capsys.readouterr().err
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n")
    assert main(["plot", str(tmp_path)]) == 2
    assert "no finished grid points" in capsys.readouterr().err
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    assert main(["plot", str(tmp_path)]) == 2
    assert "not a jaxrecon results file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="table: no results"):
        plot_law({})


def test_one_curve_writes_no_finite_size_figure(tmp_path):
    t = _table()
    one = {c: v[t["d"] == 10] for c, v in t.items()}
    assert "finite_size.png" not in plot_all(one, tmp_path)


def _law_table(curves=((10, 5), (10, 20), (100, 5), (100, 20)), seeds=20, seed=0):
    """A synthetic sharp-law study: P(identified) logistic in log(p/dn), midpoint 1.2, a width that
    shrinks with d*n; unidentified seeds are solved 70 % of the time."""
    rng = np.random.default_rng(seed)
    rows = []
    for d, n in curves:
        width = 0.4 / math.sqrt(d * n / 50)
        for r in [0.5, 0.75, 1, 1.25, 1.5, 2, 3]:
            p = round(r * d * n)
            for s in range(seeds):
                ident = rng.random() < 1 / (1 + math.exp(-(math.log(r) - math.log(1.2)) / width))
                solved = ident or rng.random() < 0.7
                err = 1e-5 if ident else 0.5 + 0.2 * rng.random()
                rows.append({"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "activation": "relu",
                             "method": "adam-lm", "seed": s, "train_loss": 0.0, "loss": 1e-13 if solved else 1e-4,
                             "error_abs": err, "error_sign": err, "residual": err, "recovered": float(ident),
                             "steps": 10, "status": "budget", "seconds": 0.1, "compile_seconds": 0.0})
    return to_table(rows)


def test_outcome_curve_counts_solved_and_identified():
    t = _law_table(curves=((10, 5),), seeds=10)
    p, p_sol, p_id_sol, p_id = outcome_curve(t, (10, 5, "relu", "adam-lm"))
    assert len(p) == 7 and np.all((0 <= p_sol) & (p_sol <= 1))
    sel = t["p"] == p[-1]
    assert p_id[-1] == t["identified"][sel].mean() and p_sol[-1] == t["solved"][sel].mean()
    both = sel & t["solved"]
    assert p_id_sol[-1] == t["identified"][both].mean()
    # no seed solved: P(identified | solved) is undefined, not 0
    t["solved"][t["p"] == p[0]] = False
    assert math.isnan(outcome_curve(t, (10, 5, "relu", "adam-lm"))[2][0])


def test_finite_size_figure_on_a_synthetic_study(tmp_path):
    t = _law_table()
    thr = estimate_thresholds(t, n_boot=200)
    assert len(thr) == 4
    for r in thr:  # the synthetic midpoint 1.2 lies in (or near) every fitted interval
        assert 1.0 < r["logit_p_over_dn"] < 1.5 and r["logit_lo"] <= r["logit_p_over_dn"] <= r["logit_hi"]
    widths = [r["logit_width"] for r in sorted(thr, key=lambda r: r["d"] * r["n"])]
    assert widths[0] > widths[-1]  # the transition sharpens with d*n
    fig = finite_size_figure(t, tmp_path / "fs.png", thresholds=thr)
    assert len(fig.axes) == 2 and (tmp_path / "fs.png").stat().st_size > 10_000
    # thresholds computed inside when not given; a table with no identified seed still draws
    none = {**t, "error_sign": np.full(len(t["p"]), 0.5), "identified": np.zeros(len(t["p"]), bool)}
    assert len(finite_size_figure(none).axes) == 2
