"""Figures and the `jaxrecon plot` command, on a synthetic results table (no attack runs)."""

import numpy as np
import pytest

from jaxrecon.cli import main
from jaxrecon.plotting import curve, plot_all, plot_collapse, plot_law, plot_residuals
from jaxrecon.sweeps import COLUMNS, read_results, rows_text, table_rows, to_table


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
    assert set(files) == {"law.png", "law.pdf", "residuals.png", "collapse.png"}
    for f in files:
        assert (tmp_path / f).stat().st_size > 10_000, f
    # each function also returns a Figure with one panel per (d, n) (+ twin axes)
    assert len(plot_law(_table()).axes) == 4
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
    for f in ("law.png", "law.pdf", "residuals.png", "collapse.png"):
        assert (tmp_path / f).stat().st_size > 0


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
