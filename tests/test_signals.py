"""Ctrl-C and SIGTERM: the first asks the run to stop at its next check point, the second quits at
once; never a native crash, and finished work is saved."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon import signals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    return env


def _reconstruct(out, *args, **env):
    cmd = [sys.executable, "-m", "jaxrecon.cli", "reconstruct", "--d", "10", "--n", "4", "--p", "800",
           "--out", str(out), *args]
    return subprocess.Popen(cmd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigint_at_any_moment_never_crashes(tmp_path):
    # Runs signalled 0.5..3 s after start (start-up, imports, the fit) and 0.1..1.5 s after the
    # model line, printed just before compilation (no cache, so every run compiles). Exit 130
    # after saving, or 0 if the run ended first; never a signal death or a native crash.
    plan = [("start", 0.5), ("start", 2.0), ("compile", 0.1), ("compile", 0.6), ("compile", 1.5)]
    procs = [_reconstruct(tmp_path / f"r{i}", "--steps", "50", "--quiet", JAXRECON_CACHE_DIR="off",
                          PYTHONUNBUFFERED="1") for i in range(len(plan))]
    t0 = time.monotonic()
    outputs = [None] * len(procs)

    def drive(i):
        when, delay = plan[i]
        p = procs[i]
        if when == "compile":
            for line in p.stdout:
                if "method=" in line:  # the model line: compilation starts now
                    break
            time.sleep(delay)
        else:
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
        p.send_signal(signal.SIGINT)
        outputs[i] = p.communicate(timeout=300)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(procs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(procs):
        out, err = outputs[i]
        assert p.returncode in (0, 130), (plan[i], p.returncode, err[-2000:])
        assert "Traceback" not in err and "Fatal" not in err, err[-2000:]
        if p.returncode == 130:
            assert "stopping after the current chunk" in err
            if "before the attack started; nothing written" in err:  # no seed had started
                assert not (tmp_path / f"r{i}").exists()
            else:  # the seeds still running were saved as interrupted
                summary = json.loads((tmp_path / f"r{i}" / "summary.json").read_text())
                assert len(summary["results"]) == 4
        if plan[i][0] == "compile":
            assert p.returncode == 130 and "nothing written" not in err, err[-2000:]


def test_sigterm_mid_run_saves_per_seed_statuses(tmp_path):
    out = tmp_path / "run"
    # p < dn: no seed can reach a zero of the loss, so every seed is still running when signalled
    p = _reconstruct(out, "--p", "20", "--method", "adam", "--steps", "100000000", "--chunk", "20",
                     JAXRECON_CACHE_DIR="off")
    for line in p.stderr:  # progress lines go to stderr (not a terminal: one plain line per update)
        if "step " in line:
            break
    p.send_signal(signal.SIGTERM)
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["interrupted"] * 4
    assert all(r["steps"] > 0 for r in summary["results"])
    assert str(out) in err and "interrupted" in err
    assert np.load(out / "arrays.npz")["x_hat"].shape == (4, 4, 10)


def test_first_signal_only_records_the_request():
    assert not signals.stop_requested()
    with signals.handle_signals() as h:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the watcher thread prints the line and records the signal
            if signals.stop_requested():
                break
            time.sleep(0.01)
        assert signals.stop_requested() and h.signum == signal.SIGINT and h.exit_code == 130
    assert not signals.stop_requested()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_driver_marks_running_seeds_interrupted(key):
    x = jr.synthetic(key, 3, 5).x
    fm = jr.RandomFeatures(jax.random.key(1), 5, 60, "relu")
    target = jr.Target(fm, jr.fit(fm, x, jnp_ones(3)))
    with signals.handle_signals():
        os.kill(os.getpid(), signal.SIGINT)
        while not signals.stop_requested():
            time.sleep(0.01)
        res = jr.reconstruct_seeds(target, key, 3, 2, method="adam", steps=100, progress=False)
    assert res.status == ["interrupted", "interrupted"] and list(res.steps) == [0, 0]


def jnp_ones(n):
    import jax.numpy as jnp

    return jnp.ones(n)


def test_sweep_stops_between_points(tmp_path):
    out = tmp_path / "sw"
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("d="):  # the first point is done: ask to stop
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)

    cfg = jr.SweepConfig(d=[4], n=[2], p=[10, 20, 30], seeds=1, steps=5, method=["adam"], pad_p="none")
    with signals.handle_signals():
        jr.sweep(cfg, out=out, progress=False, plots=False, log=log)
    assert sum(l.startswith("d=") for l in lines) == 1
    assert any("interrupted" in l for l in lines)
    assert len(jr.read_results(out)["p"]) == 1


def test_two_copies_of_one_sigterm_stop_once_and_save(tmp_path):
    # GNU timeout signals the command and then its process group: one SIGTERM arrives twice within
    # a few ms. That is one request: the run stops after its chunk and saves (was: "quitting now").
    out = tmp_path / "run"
    p = _reconstruct(out, "--p", "20", "--method", "adam", "--steps", "100000000", "--chunk", "20",
                     JAXRECON_CACHE_DIR="off")
    for line in p.stderr:
        if "step " in line:
            break
    p.send_signal(signal.SIGTERM)
    for line in p.stderr:  # the first is handled (two signals sent at once may merge into one)
        if "SIGTERM: stopping after the current chunk" in line:
            break
    p.send_signal(signal.SIGTERM)  # its copy, milliseconds later
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-2000:]
    assert "quitting now" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["interrupted"] * 4


def test_repeat_of_the_first_signal_within_a_second_is_the_same_request(monkeypatch):
    quits = []
    monkeypatch.setattr(signals.os, "_exit", lambda code: quits.append(code))
    r = signals.StopRequest("chunk")
    r.on_signal(signal.SIGTERM)
    r.on_signal(signal.SIGTERM)  # its copy
    assert quits == [] and r.signum == signal.SIGTERM
    r.on_signal(signal.SIGINT)  # another signal: quit now
    assert quits == [130]
    monkeypatch.setattr(signals, "REPEAT_WINDOW", 0.0)  # the same signal later than the window: quit now
    r.on_signal(signal.SIGTERM)
    assert quits == [130, 143]
