"""The full-size figure commands: defaults are the paper's sizes, --quick is small (no run)."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _no_datasets(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXRECON_DATA", str(tmp_path))  # an empty data directory: stand-ins are used


def test_fig1_defaults_to_paper_size_with_stand_in():
    fig1 = _load("fig1_cifar")
    args = fig1.arguments([])
    assert (args.data, args.n, args.seeds) == ("photos32", 100, 4)
    assert [float(r) for r in args.ratios.split(",")][-1] == 10.0
    assert args.out == os.path.join("benchmarks", "results", "fig1_full")
    cfg = fig1.get_config(10.0, data=args.data, n=args.n, seeds=args.seeds, memory_budget="16GB").resolve()
    assert (cfg.data.d, cfg.model.p, cfg.scale.memory_budget) == (3072, 3_072_000, "16GB")


def test_fig1_quick_and_flags():
    fig1 = _load("fig1_cifar")
    args = fig1.arguments(["--quick", "--n", "4"])
    assert (args.data, args.n, args.seeds) == ("photos16", 4, 1)
    assert args.out.endswith("fig1_quick")
    assert fig1.arguments(["--data", "digits"]).data == "digits"


def test_fig1_uses_cifar_when_on_disk(tmp_path, monkeypatch):
    fig1 = _load("fig1_cifar")
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    assert fig1.arguments(["--data-dir", str(tmp_path)]).data == "cifar10"


def test_fig5_defaults_to_paper_size_with_stand_in():
    fig5 = _load("fig5_tinyimagenet")
    args = fig5.arguments([])
    assert (args.data, args.n, args.ratio, args.method) == ("photos64", 20, 10.0, "adam")
    cfg = fig5.get_config(args.ratio, data=args.data, n=args.n).resolve()
    assert (cfg.data.d, cfg.model.p) == (12288, 2_457_600)
    assert fig5.arguments(["--quick"]).out.endswith("fig5_quick")
