"""Sweeps: grid, vmapped == looped seeds, resumable results (SIGKILL), thresholds, configs, bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxrecon.cli import main
from jaxrecon.io import write_json, write_npz
from jaxrecon.sweeps import (COLUMNS, PointOutput, ProgramCache, SweepConfig, append_rows, compiled_program,
                             config_hash, grid, load_config, pad_width, plot_dir, prepare_out, read_results, rows_text,
                             run_point, sweep)
from jaxrecon.sweeps import points as sweeps_points
from jaxrecon.sweeps import lock
from jaxrecon.sweeps import run as sweeps_run
from jaxrecon.thresholds import crossing, estimate_thresholds

ROOT = Path(__file__).resolve().parents[1]
# Tiny sweep shared by the tests: one (d, n) curve, so with pad_p="max" one compiled program
# (width 64) serves every test below that runs it. float64, as the tests' process runs with x64.
TINY = dict(name="tiny", d=[4], n=[2], p_over_dn=[0.5, 2, 8], method=["adam"], seeds=2, steps=2000,
            pad_p="max", x64=True)
KILL = {**TINY, "p_over_dn": [0.5, 1, 2, 4, 8]}  # same program (same largest p), more points
NUMERIC = [c for c in COLUMNS if c not in ("seconds", "compile_seconds")]
# One program cache for the module: the TINY program compiles once for every test that runs it.
CACHE = ProgramCache()


def _same_rows(t1, t2):
    assert len(t1["p"]) == len(t2["p"])
    for c in NUMERIC:
        a, b = t1[c], t2[c]
        if a.dtype.kind in "fc":
            np.testing.assert_array_equal(np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0), err_msg=c)
        else:
            assert a.tolist() == b.tolist(), c


def test_grid_and_p_resolution():
    r = SweepConfig(d=[10, 20], n=[4], p_over_dn=[0.5, 1], activation=["relu", "tanh"], method=["adam"]).resolved()
    pts = grid(r)
    assert len(pts) == 8
    assert {(pt.d, pt.p) for pt in pts} == {(10, 20), (10, 40), (20, 40), (20, 80)}
    r = SweepConfig(d=[10], n=[4], p_over_n=[1, 3]).resolved()
    assert [pt.p for pt in grid(r)] == [4, 12]
    # ratios that round to the same p give one point
    r = SweepConfig(d=[2], n=[2], p_over_dn=[0.1, 0.2]).resolved()
    assert [pt.p for pt in grid(r)] == [1]
    # method None means the library default, read at run time
    import jaxrecon

    assert SweepConfig(p=[5]).resolved().method == (jaxrecon.DEFAULT_METHOD,)


def test_pad_width():
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    assert [pad_width(pt, r, pts) for pt in pts] == [64, 64, 64]
    r2 = SweepConfig(**{**TINY, "pad_p": "none"}).resolved()
    assert [pad_width(pt, r2, pts) for pt in pts] == [pt.p for pt in pts]


def test_vmapped_seeds_equal_looped_seeds():
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    pt = pts[-1]
    w = pad_width(pt, r, pts)
    a = run_point(pt, r, w, vmapped=True, cache=CACHE)
    b = run_point(pt, r, w, vmapped=False, cache=CACHE)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(a.x_hat, b.x_hat, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-2, atol=1e-6)
    np.testing.assert_array_equal(a.steps, b.steps)


def test_a_seed_row_does_not_depend_on_the_number_of_seeds():
    """Mapped seeds (the CPU default): seed s of a point is the same bits with seeds=2 and seeds=4."""
    base = dict(name="repro", d=[10], n=[4], p_over_dn=[1.5], method=["adam-lm"], steps=600)
    r2, r4 = SweepConfig(**base, seeds=2).resolved(), SweepConfig(**base, seeds=4).resolved()
    pt = grid(r2)[0]
    a, b = run_point(pt, r2, pt.p, cache=CACHE), run_point(pt, r4, pt.p, cache=CACHE)
    for field in ("x_hat", "loss", "steps", "status", "residual", "train_loss"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field)[:2], err_msg=field)


def test_padded_program_matches_unpadded(key):
    """One program for a whole curve (p zero-padded) gives the p-feature model's numbers."""
    r_pad, r_none = SweepConfig(**TINY).resolved(), SweepConfig(**{**TINY, "pad_p": "none"}).resolved()
    pts = grid(r_pad)
    pt = pts[1]  # p = 16, padded to 64
    a = run_point(pt, r_pad, pad_width(pt, r_pad, pts), cache=CACHE)
    b = run_point(pt, r_none, pt.p, cache=CACHE)
    np.testing.assert_allclose(a.train_loss, b.train_loss, atol=1e-12)
    np.testing.assert_allclose(a.x_hat, b.x_hat, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(a.residual, b.residual, rtol=1e-6, atol=1e-9)


def test_sweep_writes_table_and_resumes(tmp_path):
    out = tmp_path / "s"
    t1 = sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=None, cache=CACHE)
    assert len(t1["p"]) == 3 * 2
    assert t1["p"].tolist() == [4, 4, 16, 16, 64, 64] and t1["seed"].tolist() == [0, 1] * 3
    text = (out / "results.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS) and text.endswith("\n")
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["finished"] and meta["config"]["seeds"] == 2 and "jax" in meta["versions"]
    assert meta["solved_tolerance"] == {"adam": 1e-10} and meta["identified_tolerance"] == 1e-3
    assert t1["solved"].tolist() == (t1["loss"] <= 1e-10).tolist()
    assert t1["identified"].tolist() == (t1["error_sign"] <= 1e-3).tolist()
    assert (out / "thresholds.csv").read_text().startswith("d,n,activation")
    # rerun: nothing recomputed, same table
    lines = []
    t2 = sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=lines.append, cache=CACHE)
    _same_rows(t1, t2)
    assert any("3/3 grid points already done" in ln for ln in lines)
    # a killed write leaves a partial line; an incomplete point has fewer seeds: both dropped
    full = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(full[:-1]) + full[-1][:25])
    t3 = sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=None, cache=CACHE)
    _same_rows(t1, t3)
    assert (out / "results.csv").read_text().count("\n") == 1 + 6
    # different config into the same out: refused, nothing touched
    before = (out / "results.csv").read_bytes()
    with pytest.raises(ValueError, match="out: .* different config .*steps"):
        sweep(SweepConfig(**{**TINY, "steps": 2001}), out=out, progress=False, plots=False, log=None, cache=CACHE)
    assert (out / "results.csv").read_bytes() == before


def test_sigkill_mid_sweep_then_resume_equals_uninterrupted(tmp_path):
    """Kill -9 a sweep subprocess once a point has landed; the rerun completes it exactly."""
    ref = sweep(SweepConfig(**KILL), out=tmp_path / "ref", progress=False, plots=False, log=None, cache=CACHE)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "jaxrecon.cli", "sweep", "--d", "4", "--n", "2", "--p-over-dn", "0.5,1,2,4,8",
           "--method", "adam", "--seeds", "2", "--steps", "2000", "--pad-p", "max", "--x64", "--name", "tiny",
           "--out", str(out), "--quiet", "--no-plot"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    res = out / "results.csv"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if res.exists() and res.read_bytes().count(b"\n") >= 1 + 2:  # header + one point
                break
            time.sleep(0.01)
        killed_mid_way = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    rows_before = res.read_text().count("\n") - 1
    assert killed_mid_way, proc.stderr.read().decode()[-2000:]
    assert 2 <= rows_before < 10
    again = sweep(SweepConfig(**KILL), out=out, progress=False, plots=False, log=None, cache=CACHE)
    _same_rows(ref, again)
    keys = list(zip(again["p"].tolist(), again["seed"].tolist()))
    assert len(keys) == len(set(keys)) == 10
    _same_rows(ref, read_results(out))


def test_thresholds_on_a_known_curve():
    p = np.array([10, 20, 40, 80, 160, 320], float)
    err = np.array([0.8, 0.8, 0.8, 0.6, 0.2, 0.0])
    # half level 0.4 is crossed between p=80 (0.6) and 160 (0.2), halfway in log p
    assert crossing(p, err) == pytest.approx(math.sqrt(80 * 160))
    assert math.isnan(crossing(p, np.full(6, 0.8)))
    # table form: two seeds with curves that bracket it; d n = 100
    rows = {c: [] for c in ("d", "n", "p", "activation", "method", "seed", "error_abs")}
    for s, shift in enumerate([0.1, -0.1]):
        for pi, e in zip(p, err):
            for c, v in zip(rows, (10, 10, pi, "relu", "adam", s, np.clip(e + shift, 0, None))):
                rows[c].append(v)
    table = {c: np.asarray(v) for c, v in rows.items()}
    (thr,) = estimate_thresholds(table, n_boot=200, seed=0)
    assert thr["threshold_p_over_dn"] == pytest.approx(math.sqrt(80 * 160) / 100, rel=0.02)
    assert thr["boot_lo"] <= thr["threshold_p_over_dn"] <= thr["boot_hi"]
    assert thr["boot_found"] == 1.0


def test_experiment_configs_load_and_resolve():
    for name in ("law_quick", "fig3_synthetic", "fig2_residuals", "sharp_law"):
        path = ROOT / "experiments" / f"{name}.py"
        cfg = load_config(path)
        assert isinstance(cfg, SweepConfig)  # typed, not a dict
        r = cfg.resolved()
        assert r.name == name and len(grid(r)) >= 6
        assert f"jaxrecon sweep experiments/{name}.py" in path.read_text()
    quick = load_config(ROOT / "experiments" / "law_quick.py")
    assert len(grid(quick.resolved())) * quick.seeds <= 200  # the main job stays small


def test_sharp_law_config():
    """The finite-size study: >= 4 (d, n) with d*n from ~50 to ~2000, p/(dn) around 1, 20 seeds,
    planted starts (identification, apart from reaching a zero)."""
    r = load_config(ROOT / "experiments" / "sharp_law.py").resolved()
    pts = grid(r)
    dn = sorted({pt.d * pt.n for pt in pts})
    assert len({(pt.d, pt.n) for pt in pts}) >= 4 and dn[0] <= 60 and dn[-1] >= 2000
    assert min(r.p_over_dn) <= 0.5 and max(r.p_over_dn) >= 2 and {0.9, 1, 1.1} <= set(r.p_over_dn)
    assert r.seeds >= 20 and r.planted is not None and r.planted > 0
    assert len(r.method) == 1 and "METHOD = " in (ROOT / "experiments" / "sharp_law.py").read_text()


def test_config_overrides():
    cfg = load_config(ROOT / "experiments" / "law_quick.py")
    over = cfg.replace(d=[7], steps=10, p=[3, 9], method=None)
    r = over.resolved()
    assert list(r.d) == [7] and r.steps == 10 and list(r.p) == [3, 9] and r.p_over_dn is None
    assert list(r.n) == list(cfg.n) and list(r.method) == list(cfg.method)  # None leaves a value alone
    with pytest.raises(ValueError, match="unknown key"):
        cfg.replace(colour="red")


# sweep.json of experiments/law_quick.py as written before SweepConfig had sections: resuming an old
# directory compares this hash, so the config's resolved form must keep it byte for byte.
LAW_QUICK_HASH = "77ca12046ee26cdd"
LAW_QUICK_JSON = (
    '{"name": "law_quick", "d": [10, 20], "n": [4, 5], "p": null, "p_over_n": null, "p_over_dn": [0.02, 0.05, '
    '0.25, 0.5, 1.0, 2.0, 4.0, 8.0], "activation": ["relu"], "method": ["adam-lm"], "seeds": 4, "seed": 0, '
    '"steps": 3000, "optimizer": null, "lr": null, "x64": false, "block_size": null, "noise": 0.5, '
    '"ridge": 0.0, "pad_p": "auto"}')


def test_config_hash_and_sweep_json_pinned():
    r = load_config(ROOT / "experiments" / "law_quick.py").resolved()
    assert json.dumps(r.to_dict()) == LAW_QUICK_JSON
    assert r.config_hash() == LAW_QUICK_HASH == config_hash(json.loads(LAW_QUICK_JSON))
    # the same config as the flat dict experiment files used to return
    flat = dict(name="law_quick", d=[10, 20], n=[4, 5], p_over_dn=[0.02, 0.05, 0.25, 0.5, 1, 2, 4, 8],
                activation=["relu"], method=["adam-lm"], seeds=4, seed=0, steps=3000)
    assert SweepConfig.from_dict(flat).resolved() == r and SweepConfig(**flat).resolved().config_hash() == LAW_QUICK_HASH


def test_config_flat_sectioned_and_dotted_agree():
    flat = SweepConfig(d=[10], n=[4], p_over_dn=[1, 2], steps=300, x64=True)
    nested = SweepConfig(grid={"d": [10], "n": [4], "p_over_dn": [1, 2]}, attack={"steps": 300}, scale={"x64": True})
    dotted = SweepConfig.from_dict({"grid.d": "10", "n": [4], "grid.p_over_dn": "1,2", "attack.steps": 300,
                                    "scale": {"x64": True}})
    assert flat == nested and flat.grid.d == (10,) and flat.steps == 300 and flat.attack.steps == 300
    assert dotted.resolved() == flat.resolved()
    r = flat.resolved()
    assert (r.d, r.p_over_dn, r.method) == ((10,), (1.0, 2.0), (__import__("jaxrecon").DEFAULT_METHOD,))
    assert r.attack.steps == 300 and r.scale.x64 is True and hash(r) == hash(flat.resolved())
    # replace keeps the sections' other values; one way of giving p replaces the others
    over = flat.replace(lr=0.1, p=[7], noise=None)
    assert over.grid.d == (10,) and over.attack.steps == 300 and over.attack.first_order.lr == 0.1
    assert (over.p, over.p_over_dn, over.noise) == ((7,), None, 0.5)
    assert flat.override({"grid.p_over_n": "1,3"}).resolved().p_over_n == (1.0, 3.0)
    with pytest.raises(ValueError, match=r"^config: unknown key\(s\) \['grid.colour'\]"):
        SweepConfig.from_dict({"grid": {"colour": 1}})


def _cfg_file(tmp_path, body):
    f = tmp_path / "cfg.py"
    f.write_text(body)
    return str(f)


@pytest.mark.parametrize("args,msg", [
    (["--d", "", "--n", "2", "--p", "5"], "d: empty list"),
    (["--d", "4", "--n", "2", "--p-over-dn", "0,1"], "--p-over-dn: must be a finite number > 0"),
    (["--d", "4", "--n", "2", "--p-over-dn", "-1"], "--p-over-dn: must be a finite number > 0"),
    (["--d", "4", "--n", "2"], "p: give a config file or one of"),
    (["--d", "4", "--n", "2", "--p", "5", "--method", "nope"], "method: unknown value"),
    (["no/such/config.py"], "config: no such file"),
])
def test_bad_input_exits_2(args, msg, tmp_path, capsys):
    assert main(["sweep", *args, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


def test_bad_config_files_exit_2(tmp_path, capsys):
    for body, msg in [("def get_config():\n    return {'d': [4], 'colour': 1}\n", "config: unknown key(s) ['colour']"),
                      ("def get_config(:\n", "config: cannot read"),
                      ("x = 1\n", "has no get_config()")]:
        assert main(["sweep", _cfg_file(tmp_path, body), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err


def test_out_with_other_config_refused_by_cli(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"config": {"steps": 1}, "config_hash": "0" * 16}))
    (out / "results.csv").write_text(",".join(COLUMNS) + "\n")
    before = (out / "results.csv").read_bytes()
    assert main(["sweep", "--d", "4", "--n", "2", "--p", "5", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and (out / "results.csv").read_bytes() == before


def test_compile_cache_reused():
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    w = pad_width(pts[0], r, pts)
    compiled_program(pts[0], r, w, cache=CACHE)
    n_programs = len(CACHE)
    _, seconds = compiled_program(pts[2], r, w, cache=CACHE)  # same (d, n) curve: same program
    assert seconds == 0.0 and len(CACHE) == n_programs
    assert len(ProgramCache()) == 0  # each cache is its own: no state shared between runs


# --------------------------------------------------------------------------------------------
# One writer per directory, merged duplicates, pre-flight size checks, file modes
# --------------------------------------------------------------------------------------------
def _fake_rows(pt, seeds=2):
    return [{"d": pt.d, "n": pt.n, "p": pt.p, "p_over_dn": pt.p_over_dn, "activation": pt.activation,
             "method": pt.method, "seed": s, "train_loss": 0.0, "loss": 0.1, "error_abs": 0.5 / pt.p,
             "error_sign": 0.5 / pt.p, "residual": 0.1, "recovered": 0.0, "steps": 10, "status": "budget",
             "seconds": 1.0, "compile_seconds": 0.0} for s in range(seeds)]


def _fake_sweep_dir(out, rows):
    """A sweep directory of TINY (sweep.json, results.csv) holding ``rows``, without running it."""
    r = SweepConfig(**TINY).resolved()
    prepare_out(out, r, grid(r))
    append_rows(out / "results.csv", rows)


def test_second_writer_refused_while_a_sweep_holds_the_lock(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    with lock.hold(out):
        with pytest.raises(ValueError, match=rf"out: .* is being written by another sweep \(pid {os.getpid()} on "):
            sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=None, cache=CACHE)
        assert main(["sweep", "--d", "4", "--n", "2", "--p", "5", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jaxrecon: error: --out:") and f"pid {os.getpid()}" in err[0], err
        assert sorted(f.name for f in out.iterdir()) == [".lock"]  # nothing written
    assert list(out.iterdir()) == []  # the holder removes its lock
    with lock.hold(out):  # released by its holder's exit
        pass


def test_plot_reads_a_directory_while_a_sweep_holds_its_lock(tmp_path):
    r = SweepConfig(**TINY).resolved()
    out = tmp_path / "o"
    _fake_sweep_dir(out, [row for pt in grid(r) for row in _fake_rows(pt)])
    with lock.hold(out):
        thr = plot_dir(out, bootstrap=10, log=None)
        assert len(thr) == 1 and (out / "law.png").is_file() and (out / "thresholds.csv").is_file()


def _no_run(*args, **kwargs):
    raise AssertionError("a finished point was recomputed")


def test_resume_merges_duplicated_rows_and_recomputes_nothing(tmp_path, monkeypatch):
    """Two writers appended every point twice: resuming keeps one row per point and seed."""
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    out = tmp_path / "o"
    _fake_sweep_dir(out, [row for pt in pts for row in _fake_rows(pt) * 2])
    monkeypatch.setattr(sweeps_run, "run_point", _no_run)
    monkeypatch.setattr(sweeps_run, "compiled_program", _no_run)
    lines = []
    t = sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=lines.append)
    assert t["p"].tolist() == [4, 4, 16, 16, 64, 64] and t["seed"].tolist() == [0, 1] * 3
    assert any("3/3 grid points already done" in ln for ln in lines)
    assert (out / "results.csv").read_text() == ",".join(COLUMNS) + "\n" + rows_text(
        [row for pt in pts for row in _fake_rows(pt)])
    assert len(read_results(out)["p"]) == 6


def test_resume_reruns_only_incomplete_points(tmp_path, monkeypatch):
    r = SweepConfig(**TINY).resolved()
    pts = grid(r)
    out = tmp_path / "o"
    # p=4 twice over, p=16 once, p=64 only seed 0 (twice): only p=64 is unfinished
    _fake_sweep_dir(out, _fake_rows(pts[0]) * 2 + _fake_rows(pts[1]) + _fake_rows(pts[2])[:1] * 2)
    ran = []

    def fake_run_point(pt, resolved, width, program):
        ran.append(pt.p)
        x = np.stack([np.eye(pt.n, pt.d)] * resolved.seeds)
        z = np.zeros(resolved.seeds)
        return PointOutput(x, x, z, z, z.astype(int), z.astype(int) + 1, z, 0.5, 0.0)

    monkeypatch.setattr(sweeps_run, "compiled_program", lambda *a: ("program", 0.0))
    monkeypatch.setattr(sweeps_run, "run_point", fake_run_point)
    t = sweep(SweepConfig(**TINY), out=out, progress=False, plots=False, log=None)
    assert ran == [64]
    assert t["p"].tolist() == [4, 4, 16, 16, 64, 64] and t["seed"].tolist() == [0, 1] * 3
    assert t["status"].tolist()[:4] == ["budget"] * 4 and t["status"].tolist()[4:] == ["converged"] * 2
    assert (out / "results.csv").read_text().count("\n") == 1 + 6


@pytest.mark.parametrize("grid_values,msg", [
    (dict(d=[4], n=[2], p=[2**31]), "p = 2147483648, over the int32 limit"),
    (dict(d=[2000], n=[1], p=[2_000_000]), "p*d = 4000000000, over the int32 limit"),
    (dict(d=[10], n=[2], p=[10**5], seeds=4), "needs at least 0.0192 GB .* more than the 0.001 GB"),
])
def test_oversized_grid_refused_before_anything_is_written(grid_values, msg, tmp_path, monkeypatch):
    monkeypatch.setattr(sweeps_points, "_host_memory", lambda: 10**6)
    out = tmp_path / "new" / "o"
    with pytest.raises(ValueError, match=msg):
        sweep(SweepConfig(**grid_values, x64=False), out=out, progress=False, plots=False, log=None)
    assert not (tmp_path / "new").exists()


def test_oversized_grid_exits_2_without_a_directory(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["sweep", "--d", "4", "--n", "2", "--p", str(2**31), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int32" in err[0], err
    assert not out.exists()


def test_results_files_get_the_umask_mode(tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("")  # what open() gives under this umask
    write_json(tmp_path / "a.json", {"x": 1})
    write_npz(tmp_path / "a.npz", x=np.zeros(2))
    want = ref.stat().st_mode & 0o777
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == want
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == want
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "a.npz", "ref.txt"]  # no temporaries


def test_config_files_that_are_not_python_files(tmp_path):
    from jaxrecon.sweeps import load_config

    with pytest.raises(ValueError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a .py file"):
        load_config(tmp_path / "c.txt")
    (tmp_path / "c.json").write_text('{"d": [6], "n": [2], "p_over_dn": [2], "steps": 5}')
    cfg = load_config(tmp_path / "c.json")
    assert cfg.d == (6,) and cfg.steps == 5
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="cannot read"):
        load_config(tmp_path / "bad.json")
    # a sweep directory's sweep.json is a config too (rerun a sweep elsewhere)
    resolved = cfg.resolved()
    (tmp_path / "sweep.json").write_text(json.dumps({"config": resolved.to_dict(), "config_hash": "x"}))
    assert load_config(tmp_path / "sweep.json").resolved().config_hash() == resolved.config_hash()
