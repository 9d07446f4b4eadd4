"""The persistent compilation cache: on by default at the CLI, JAXRECON_CACHE_DIR moves or disables it."""

import json
import os
import subprocess
import sys

import pytest

from jaxrecon import cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, cache_dir, out):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAXRECON_CACHE_DIR=str(cache_dir))
    cmd = [sys.executable, "-m", "jaxrecon.cli", "reconstruct", "--d", "6", "--n", "3", "--p", "200",
           "--steps", "20", "--seeds", "2", "--quiet", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


def _entries(d):
    return sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())


def test_a_repeated_command_compiles_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    first = _run(tmp_path, cache_dir, tmp_path / "a")
    entries = _entries(cache_dir)
    assert entries, "the first run stored its compiled programs"
    second = _run(tmp_path, cache_dir, tmp_path / "b")
    assert _entries(cache_dir) == entries  # every program came from the cache: nothing new written
    assert second["results"] == [dict(r, seconds=s["seconds"]) for r, s in zip(first["results"], second["results"])]
    assert second["compile_seconds"] < first["compile_seconds"]


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXRECON_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("JAXRECON_CACHE_DIR", "off")
    assert cache.cache_dir() is None
    monkeypatch.delenv("JAXRECON_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "jaxrecon" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "jaxrecon" / "jax"


def test_the_test_session_uses_one_cache():
    import jax

    if cache.cache_dir() is None:
        pytest.skip("JAXRECON_CACHE_DIR=off")
    assert jax.config.jax_compilation_cache_dir == os.environ["JAXRECON_CACHE_DIR"]
