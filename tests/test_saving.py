"""Results saved by default, file modes, help text and progress lines."""

import os
import re
import stat
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxrecon as jr
from jaxrecon.cli import build_parser, main

SMALL = ["--d", "4", "--n", "2", "--p", "50", "--steps", "5", "--method", "adam", "--seeds", "1", "--quiet"]


def test_results_saved_by_default_in_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reconstruct", *SMALL]) == 0
    out = capsys.readouterr().out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and re.fullmatch(r"reconstruct-\d{8}-\d{6}", runs[0].name)
    assert {"summary.json", "arrays.npz"} <= {p.name for p in runs[0].iterdir()}
    first = out.splitlines()[0]
    assert "saving to" in first and f"runs/{runs[0].name}" in first
    assert main(["reconstruct", *SMALL]) == 0  # a second run in the same second gets its own directory
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_no_save(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["reconstruct", *SMALL, "--no-save"]) == 0
    assert not (tmp_path / "runs").exists()
    assert "not saved" in capsys.readouterr().out


def test_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["reconstruct", *SMALL, "--out", str(tmp_path / "o")]) == 0
    finally:
        os.umask(old)
    for name in ("summary.json", "arrays.npz"):
        assert stat.S_IMODE((tmp_path / "o" / name).stat().st_mode) == 0o644, name


def test_help_shows_each_default_once():
    sub = build_parser()._subparsers._group_actions[0].choices["reconstruct"]
    for action in sub._actions:
        assert len(re.findall(r"\(default\b", action.help or "")) <= 1, action.help


def test_plain_progress_lines_when_not_a_terminal(key, capsys):
    x = jr.synthetic(key, 3, 5).x
    fm = jr.RandomFeatures(jax.random.key(1), 5, 60, "relu")
    target = jr.Target(fm, jr.fit(fm, x, jnp.ones(3)))
    jr.reconstruct_seeds(target, key, 3, 2, method="adam", steps=300, chunk=50, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines and all(l.startswith("reconstruct") for l in lines), lines
    assert re.search(r"step \d+/300", lines[-1]) and "loss" in lines[-1] and "eta" not in lines[-1].lower()


def test_progress_clock_counts_from_the_given_start(capsys):
    """The split start's two stages print on one clock: plain lines show seconds since ``t0``."""
    import time
    import types

    from jaxrecon.attack.progress import Progress

    state = types.SimpleNamespace(status=jnp.zeros(2, jnp.int32), loss=jnp.ones(2), phase=jnp.zeros(2, jnp.int32))
    Progress(10, 2, True, t0=time.perf_counter() - 500).update(1, state)
    Progress(10, 2, True).update(1, state)
    first, second = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert int(re.search(r"(\d+)s$", first).group(1)) >= 500 and re.search(r" 0s$", second)


def test_chunks_sized_to_the_update_interval():
    # the sizer's decisions: tests/test_chunk_time.py (chunks bounded by time, a scripted clock)
    from jaxrecon.attack.progress import TARGET_SECONDS, ChunkSizer

    s = ChunkSizer(cap=250, phases=1)
    assert s.next() == 1 and TARGET_SECONDS <= 3.0
