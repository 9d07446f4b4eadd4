"""Checks before any work (huge sizes, memory), file-system errors, results committed as a unit."""

import errno
import json
import os

import numpy as np
import pytest

from jaxrecon.cli import main

SMALL = ["--d", "4", "--n", "2", "--p", "50", "--steps", "5", "--method", "adam", "--seeds", "1", "--quiet"]


@pytest.mark.parametrize("args,msg", [
    (["--d", "100", "--n", "20", "--p", "1000000000000"], "p: p = 1000000000000 is over the int32 limit"),
    (["--d", "100", "--n", "20", "--p", "1000000000"], "p: p*n = 20000000000 is over the int32 limit"),
    (["--data", "digits", "--n", "4", "--p", "100", "--image-size", "100000"],
     "d: d = 10000000000 is over the int32 limit"),
])
def test_huge_sizes_are_one_line_errors_before_anything_is_written(tmp_path, capsys, args, msg):
    out = tmp_path / "a" / "b"
    assert main(["reconstruct", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err
    assert not (tmp_path / "a").exists()


def test_dense_features_over_the_memory_suggest_streaming(tmp_path, capsys, monkeypatch):
    from jaxrecon.runner import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 10**6)
    assert main(["reconstruct", *SMALL[:4], "--p", "100000", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory" in err[0] and "--memory-budget" in err[0], err
    assert not (tmp_path / "o").exists()


def test_read_only_out_is_a_one_line_error_naming_the_path(tmp_path, capsys, monkeypatch):
    target = tmp_path / "ro" / "run"

    def refuse(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr("pathlib.Path.mkdir", refuse)  # root ignores chmod: mock the refusal
    assert main(["reconstruct", *SMALL, "--out", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(tmp_path / "ro") in err[0], err


def test_full_disk_leaves_no_arrays_without_summary_and_no_empty_dir(tmp_path, capsys, monkeypatch):
    import jaxrecon.io as io

    out = tmp_path / "full" / "run"
    real = np.savez_compressed

    def full(f, **arrays):
        real(f, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.np, "savez_compressed", full)
    assert main(["reconstruct", *SMALL, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and str(out) in err[0], err
    assert not (tmp_path / "full").exists()  # nothing half-written, no empty directories


def test_a_failed_summary_write_keeps_no_arrays(tmp_path, monkeypatch):
    import jaxrecon.io as io

    real = io.json.dump

    def full(obj, f, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.json, "dump", full)
    out = tmp_path / "run"
    assert main(["reconstruct", *SMALL, "--out", str(out)]) == 1
    assert not (out / "arrays.npz").exists() and not (out / "summary.json").exists()
    monkeypatch.setattr(io.json, "dump", real)
    # an existing result is replaced only as a whole
    assert main(["reconstruct", *SMALL, "--out", str(out)]) == 0
    before = (out / "summary.json").read_text()
    monkeypatch.setattr(io.json, "dump", full)
    assert main(["reconstruct", *SMALL, "--seed", "3", "--out", str(out), "--overwrite"]) == 1
    assert (out / "summary.json").read_text() == before
    assert json.loads(before)["config"]["seed"] == 0 and np.load(out / "arrays.npz")["x"].shape == (2, 4)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failure_after_the_out_dir_was_made_removes_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x" / "y"
    monkeypatch.delenv("JAXRECON_DATA", raising=False)
    assert main(["reconstruct", "--data", "cifar10", "--data-dir", str(tmp_path / "none"), "--n", "4",
                 "--p-over-dn", "2", "--out", str(out), "--quiet"]) == 2
    assert not (tmp_path / "x").exists()


def test_data_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for data in ("cifar10", "mnist", "tinyimagenet"):
        assert main(["reconstruct", "--data", data, "--data-dir", str(f), "--n", "4", "--p-over-dn", "2",
                     "--no-save", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "is not a directory" in err and "does not exist" not in err, err
