"""Hardening of the command line and its files (issue 29): rows resume cannot place are kept, a
grid without a threshold still plots, sweep names stay inside runs/, messages name the user's flags
and paths, runs never overwrite or mix directories, temporary files are unique, booleans are not
numbers, a config calling sys.exit is an error."""

import errno
import json
import os
import threading

import numpy as np
import pytest

from jaxrecon.attack import DEFAULT_METHOD
from jaxrecon.cli import build_parser, main, user_names
from jaxrecon.config import from_dict
from jaxrecon.runner import ReconstructConfig
from jaxrecon.sweeps import SweepConfig, grid, load_config, plot_dir, prepare_out, read_results, rows_text, to_table
from jaxrecon.sweeps import lock, store
from jaxrecon.sweeps.config import check_name

CFG = {"name": "tiny", "d": [4], "n": [2], "p": [8, 64], "seeds": 2, "steps": 50}


def _row(p, seed, d=4, n=2, error=0.5, method=DEFAULT_METHOD):
    return {"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "activation": "relu", "method": method,
            "seed": seed, "train_loss": 0.1, "loss": 1e-3, "error_abs": error, "error_sign": error,
            "residual": 0.1, "recovered": 0, "steps": 50, "status": "budget", "seconds": 0.1,
            "compile_seconds": 0.1}


def _finished(tmp_path, extra=(), config=CFG):
    """``cfg.json`` and a finished sweep of it in ``sw/`` (crafted rows, no attack), plus ``extra`` rows."""
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    r = load_config(tmp_path / "cfg.json").resolved()
    out = tmp_path / "sw"
    prepare_out(out, r, grid(r))
    rows = [_row(p, s) for p in config["p"] for s in range(config["seeds"])]
    with open(out / "results.csv", "a") as f:
        f.write(rows_text(rows + list(extra)))
    return out, r


def _resume(tmp_path):
    return main(["sweep", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "sw"), "--quiet", "--no-plot",
                 "--bootstrap", "0"])


# -- 1. resume never deletes rows silently ---------------------------------------------------------

def test_resume_moves_rows_it_cannot_place_to_rejected_rows(tmp_path):
    stray = [_row(999, 0), _row(8, 7), _row(8, 0, d=5), _row(64, 1, method="adam")]
    out, r = _finished(tmp_path, stray)
    said = []
    done = prepare_out(out, r, grid(r), warn=said.append)
    assert len(done) == 2 and all(len(v) == 2 for v in done.values())  # the grid's points are all kept
    assert len(said) == 1 and "4 row(s)" in said[0] and "rejected_rows.csv" in said[0]
    rejected = read_results(out / "rejected_rows.csv")
    assert sorted(zip(rejected["d"].tolist(), rejected["p"].tolist(), rejected["seed"].tolist(),
                      rejected["method"].tolist())) == sorted((x["d"], x["p"], x["seed"], x["method"]) for x in stray)
    assert len(read_results(out / "results.csv")["p"]) == 4
    # resuming again finds nothing to move and repeats no row
    said.clear()
    prepare_out(out, r, grid(r), warn=said.append)
    assert said == [] and len((out / "rejected_rows.csv").read_text().splitlines()) == 1 + 4
    # a later stray row is added to the file, the earlier ones kept once
    with open(out / "results.csv", "a") as f:
        f.write(rows_text([_row(8, 9), _row(999, 0)]))
    prepare_out(out, r, grid(r), warn=said.append)
    assert len(said) == 1 and "2 row(s)" in said[0]
    assert len((out / "rejected_rows.csv").read_text().splitlines()) == 1 + 5


def test_resume_from_the_cli_warns_in_one_line_and_finishes(tmp_path, capsys):
    out, _ = _finished(tmp_path, [_row(999, 0), _row(999, 1)])
    assert _resume(tmp_path) == 0
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("jaxrecon:")]
    assert len(err) == 1 and err[0].startswith("jaxrecon: warning: 2 row(s)") and "rejected_rows.csv" in err[0]
    assert (out / "rejected_rows.csv").is_file() and not (out / ".lock").exists()


def test_a_foreign_rejected_rows_file_is_not_overwritten(tmp_path, capsys):
    out, _ = _finished(tmp_path, [_row(999, 0)])
    (out / "rejected_rows.csv").write_text("mine\n")
    assert _resume(tmp_path) == 2
    err = capsys.readouterr().err
    assert "rejected_rows.csv" in err and (out / "rejected_rows.csv").read_text() == "mine\n"
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 5  # nothing moved


def test_results_file_of_garbage_is_refused_and_a_cut_header_is_not(tmp_path, capsys):
    out, _ = _finished(tmp_path)
    (out / "results.csv").write_bytes(b"\x00\xff" * 100)  # no line at all: not a header cut short
    assert _resume(tmp_path) == 2
    err = capsys.readouterr().err
    assert "results.csv" in err and "not a jaxrecon results file" in err
    assert (out / "results.csv").read_bytes() == b"\x00\xff" * 100
    (out / "results.csv").write_text(store._HEADER[:25])  # killed while writing the header
    assert read_results(out)["p"].size == 0


# -- 2. a grid without a threshold ------------------------------------------------------------------

def test_no_threshold_reached_plots_and_says_so(tmp_path, capsys):
    from jaxrecon.plotting import finite_size_figure
    from jaxrecon.thresholds import estimate_thresholds

    rows = [_row(p, s, d=d, n=n) for d, n in ((4, 2), (6, 3)) for p in (8, 64) for s in range(2)]
    table = to_table(rows)
    thr = estimate_thresholds(table, n_boot=0)
    assert not any(np.isfinite(r["logit_p_over_dn"]) or np.isfinite(r["threshold_p"]) for r in thr)
    fig = finite_size_figure(table, tmp_path / "fs.png", thresholds=thr)
    assert (tmp_path / "fs.png").stat().st_size > 0
    assert any("no threshold reached" in t.get_text() for ax in fig.axes for t in ax.texts)
    out = tmp_path / "sw"
    out.mkdir()
    (out / "results.csv").write_text(store._HEADER + rows_text(rows))
    assert main(["plot", str(out), "--bootstrap", "0"]) == 0
    assert "no threshold reached" in capsys.readouterr().out
    assert (out / "finite_size.png").is_file() and (out / "law.png").is_file()


# -- 3. sweep names stay inside runs/ ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "a\\b", "/abs"])
def test_sweep_names_with_path_parts_are_refused(name):
    with pytest.raises(ValueError, match="name: must be"):
        SweepConfig(**{**CFG, "name": name}).resolved()


def test_sweep_name_escape_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert main(["sweep", "--d", "4", "--n", "2", "--p", "8", "--name", "../../x", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxrecon: error: --name:") and "../../x" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["work"] and os.listdir(tmp_path / "work") == []
    assert check_name("law-d50") == "law-d50"


# -- 5. messages name the user's flags --------------------------------------------------------------

@pytest.mark.parametrize("args,start", [
    (["--switch-after", "-5"], "--switch-after: must be a positive integer"),
    (["--attack.switch_after", "-5"], "--attack.switch_after: must be a positive integer"),
    (["--theta-noise", "nan"], "--theta-noise: must be a finite number"),
    (["--defence.theta_noise", "nan"], "--defence.theta_noise: must be a finite number"),
    (["--prune", "2"], "--prune:"),
    (["--dp-epsilon", "1", "--dp-delta", "2"], "--dp-delta:"),
    (["--lr=nan"], "--lr: must be a finite number"),
    (["--memory-budget", "lots"], "--memory-budget: must be a size"),
    (["--steps", "abc"], "--steps: invalid int value: 'abc'"),
    (["--attack.steps", "abc"], "--attack.steps: invalid int value: 'abc'"),
    (["--quantize", "int4"], "--quantize: invalid choice: 'int4'"),
    (["--method", "adam", "--switch-after", "5"], "--switch-after: method 'adam' has no LM phase"),
    (["--out", ""], "--out: empty path"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_reconstruct_messages_name_the_flag_typed(args, start, tmp_path, capsys):
    argv = ["reconstruct", "--d", "4", "--n", "2", "--p", "64", "--steps", "10", "--quiet", *args]
    if "--out" not in args:
        argv += ["--no-save"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxrecon: error: " + start), err


@pytest.mark.parametrize("args,start", [
    (["--defence", "theta_noise", "--defence-strength", "nan"], "--defence-strength: must be a finite number"),
    (["--defence", "theta_noise"], "--defence-strength: the theta_noise defence needs"),
    (["--d", "4,-1"], "--d: must be a positive integer"),
    (["--grid.d", "x"], "--grid.d: must be a comma-separated list of int"),
    (["--bootstrap", "-1"], "--bootstrap: must be a non-negative integer"),
    (["--out", ""], "--out: empty path"),
])
def test_sweep_messages_name_the_flag_typed(args, start, tmp_path, capsys):
    argv = ["sweep", "--d", "4", "--n", "2", "--p", "8", "--quiet", "--out", str(tmp_path / "sw"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxrecon: error: " + start), err
    assert not (tmp_path / "sw").exists()


def test_user_names_table():
    parser = build_parser()
    sweep, recon = parser.commands["sweep"], parser.commands["reconstruct"]
    # an internal name from a config file (no flag typed) becomes the config key
    assert user_names("strength: bad", sweep, ["cfg.py"], config_file=True) == "defence_strength: bad"
    assert user_names("steps: bad", sweep, ["cfg.py"], config_file=True) == "steps: bad"
    assert user_names("steps: bad", sweep, ["cfg.py", "--attack.steps", "0"], config_file=True) == \
        "--attack.steps: bad"
    # an abbreviation names the flag it stands for; --seed is not an abbreviation of --seeds
    assert user_names("first_steps: bad", recon, ["--switch-a", "-5"]) == "--switch-after: bad"
    assert user_names("seeds: bad", recon, ["--seed", "1", "--seeds", "0"]) == "--seeds: bad"
    # a field of a part: the typed flag of that part (the split start's LM), a dotted attack option
    assert user_names("cg_iters: bad", recon, ["--split-cg-iters", "0"]) == "--split-cg-iters: bad"
    assert user_names("cg_iters: bad", recon, ["--cg-iters", "0"]) == "--cg-iters: bad"
    assert user_names("start.split.features: bad", recon, ["--split-features", "-1"]) == "--split-features: bad"
    assert user_names("first_order.switch_after: bad", recon, ["--switch-after", "-1"]) == "--switch-after: bad"
    assert user_names("a/b: bad", recon, []) == "a/b: bad"
    assert user_names("not a name: x", recon, ["--d", "1"]) == "not a name: x"


# -- 6. --out, lock, paths, temporary files, booleans, sys.exit -------------------------------------

def test_out_empty_is_an_error_for_every_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv in (["reconstruct", "--d", "4", "--n", "2", "--p", "8", "--out", ""],
                 ["sweep", "--d", "4", "--n", "2", "--p", "8", "--out", ""],
                 ["plot", "sw", "--out", ""], ["plot", ""]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "empty path" in err[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("earlier", ["summary.json", "arrays.npz", "recon.png"])
def test_reconstruct_refuses_an_earlier_run(earlier, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / earlier).write_text("earlier")
    assert main(["reconstruct", "--d", "4", "--n", "2", "--p", "8", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxrecon: error: --out:") and earlier in err[0]
    assert "--overwrite" in err[0] and (out / earlier).read_text() == "earlier"


def test_reconstruct_overwrite_replaces_the_earlier_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for f in ("summary.json", "recon.png"):
        (out / f).write_text("earlier")
    argv = ["reconstruct", "--d", "4", "--n", "2", "--p", "64", "--seeds", "1", "--steps", "20", "--out", str(out),
            "--quiet", "--overwrite"]
    assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["p"] == 64
    assert not (out / "recon.png").exists()  # the earlier run's figure is not left beside the new results


@pytest.mark.parametrize("files", [("sweep.json",), ("results.csv",)])
def test_reconstruct_refuses_a_sweep_directory(files, tmp_path, capsys):
    out = tmp_path / "sw"
    out.mkdir()
    for f in files:
        (out / f).write_text("x")
    assert main(["reconstruct", "--d", "4", "--n", "2", "--p", "8", "--out", str(out), "--overwrite"]) == 2
    assert "holds a jaxrecon sweep" in capsys.readouterr().err and sorted(os.listdir(out)) == sorted(files)


def test_sweep_refuses_a_reconstruct_run_and_leaves_no_lock(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert main(["sweep", "--d", "4", "--n", "2", "--p", "8", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reconstruct run (summary.json)" in err[0]
    assert os.listdir(out) == ["summary.json"]


def test_refused_sweep_leaves_no_lock_and_no_new_directory(tmp_path, monkeypatch, capsys):
    out, _ = _finished(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps({**CFG, "steps": 60}))  # another config: refused
    assert _resume(tmp_path) == 2
    assert "different config" in capsys.readouterr().err and not (out / ".lock").exists()
    # the directories a refused sweep made are removed again
    from jaxrecon.sweeps import run as sweeps_run

    def refuse(*a, **k):
        raise ValueError("out: refused")

    monkeypatch.setattr(sweeps_run, "prepare_out", refuse)
    with pytest.raises(ValueError, match="refused"):
        sweeps_run.sweep(SweepConfig(**CFG), out=tmp_path / "new" / "deeper", progress=False, plots=False, log=None)
    assert not (tmp_path / "new").exists()


def test_lock_file_is_removed_and_a_stale_one_is_taken(tmp_path):
    (tmp_path / ".lock").write_text('{"pid": 1, "hostname": "h", "started": "s"}')  # left by a killed sweep
    with lock.hold(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(ValueError, match="being written by another sweep"):
            with lock.hold(tmp_path):
                pass
        assert path.exists()  # a refused second writer does not remove the holder's lock
    assert not (tmp_path / ".lock").exists()
    with lock.hold(tmp_path):  # and it can be taken again
        pass


def test_lock_removed_under_a_waiting_opener_is_not_shared(tmp_path, monkeypatch):
    # B opened .lock just before A removed it: B must not lock the removed file alone
    fd_b = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    os.unlink(tmp_path / ".lock")
    real_open = os.open
    calls = []

    def opener(path, flags, mode=0o777):
        calls.append(path)
        return fd_b if len(calls) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(lock.os, "open", opener)
    with lock.hold(tmp_path) as path:
        assert len(calls) == 2 and path.exists()  # retried on the file now at the path


def test_write_errors_name_the_path(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    path.write_text(store._HEADER)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk: no file name

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError) as e:
        store.append_rows(path, [_row(8, 0)])
    assert e.value.filename == str(path) and e.value.errno == errno.ENOSPC


def test_cli_names_the_output_directory_of_an_error_without_a_file(tmp_path, monkeypatch, capsys):
    import jaxrecon.sweeps

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jaxrecon.sweeps, "sweep", full)
    out = tmp_path / "sw"
    assert main(["sweep", "--d", "4", "--n", "2", "--p", "8", "--out", str(out), "--quiet"]) == 1
    assert capsys.readouterr().err.strip() == f"jaxrecon: error: {out}: No space left on device"


def test_figures_and_thresholds_use_unique_temporary_files(tmp_path, monkeypatch):
    from jaxrecon.thresholds import estimate_thresholds, write_thresholds

    out, _ = _finished(tmp_path)
    table = read_results(out)
    thr = estimate_thresholds(table, n_boot=0)
    errors = []

    def writer():
        try:
            for _ in range(30):
                write_thresholds(out / "thresholds.csv", thr)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and (out / "thresholds.csv").read_text().count("\n") == 1 + len(thr)
    # a failed rename names the file written, not a temporary file, and leaves no temporary file
    import jaxrecon.io

    def no_rename(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(jaxrecon.io.os, "replace", no_rename)
    for write in (lambda: write_thresholds(out / "thresholds.csv", thr),
                  lambda: plot_dir(out, bootstrap=0, log=None)):
        with pytest.raises(OSError) as e:
            write()
        assert ".tmp" not in str(e.value.filename) and e.value.filename.startswith(str(out))
    assert not [f for f in os.listdir(out) if f.startswith(".")]


@pytest.mark.parametrize("values,msg", [
    ({"noise": True}, "noise: must be a float, got the boolean True"),
    ({"seeds": True}, "seeds: must be an int, got the boolean True"),
    ({"ridge": False}, "ridge: must be a float"),
    ({"p_over_dn": [1.0, True]}, "p_over_dn: must be a float"),
    ({"d": [4, True]}, "d: must be an int"),
])
def test_json_booleans_are_not_numbers(values, msg, tmp_path):
    base = {"d": [4], "n": [2], "p": [8]}
    if "p_over_dn" in values:
        base.pop("p")
    (tmp_path / "c.json").write_text(json.dumps({**base, **values}))
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        load_config(tmp_path / "c.json")
    with pytest.raises(ValueError, match="lr: must be a float"):
        ReconstructConfig(d=4, n=2, p=8, lr=True)
    assert from_dict(type(ReconstructConfig().data), {"noise": 0.5}).noise == 0.5


@pytest.mark.parametrize("body,msg", [
    ("import sys\nsys.exit(0)\n", "called sys.exit(0) while loading"),
    ("import sys\ndef get_config():\n    sys.exit('bye')\n", "get_config() in"),
    ("raise SystemExit(3)\n", "called sys.exit(3)"),
])
def test_config_calling_sys_exit_is_one_line(body, msg, tmp_path, capsys):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(body)
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "sw"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxrecon: error: config:") and msg in err[0] and str(cfg) in err[0]
    assert not (tmp_path / "sw").exists()
