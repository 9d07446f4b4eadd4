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


def test_two_layer_multiclass_is_the_papers_run_with_a_stand_in():
    tlm = _load("two_layer_multiclass")
    said = []
    cfg = tlm.config_of(tlm.arguments([]), log=said.append).resolve()
    assert "using the bundled digits" in said[0]  # no CIFAR-10 in the empty data directory
    m = cfg.model
    assert (cfg.data.name, cfg.data.classes, cfg.data.n, m.classes, m.train) == ("digits", "10", 100, 10, "all")
    assert (m.train_lr, m.train_tol, m.train_steps, m.p) == (1e-5, 1e-7, 1_000_000, 4 * 64 * 100)
    # on CIFAR-10 the launch file's width: p = k * width = 4 d n
    paper = tlm.get_config(data="cifar10", data_dir="unused").resolve()
    assert (paper.data.d, paper.model.width, paper.model.p) == (3072, 122_880, 1_228_800)
    quick = tlm.config_of(tlm.arguments(["--quick"]), log=said.append).resolve()
    assert (quick.data.n, quick.model.train_lr, quick.attack.seeds, quick.model.width) == (20, None, 2, 512)
    assert tlm.arguments(["--quick"]).out.endswith("two_layer_multiclass_quick")


def test_two_layer_multiclass_and_resnet_use_cifar_when_on_disk(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    tlm, rn = _load("two_layer_multiclass"), _load("resnet_binary")
    said = []
    q = tlm.config_of(tlm.arguments(["--quick", "--data-dir", str(tmp_path)]), log=said.append).resolve()
    assert (q.data.name, q.data.d) == ("cifar10", 192) and not said
    r = rn.config_of(rn.arguments(["--data-dir", str(tmp_path)]), log=said.append).resolve()
    assert (r.data.name, r.data.classes, r.data.d) == ("cifar10", "6,9", 3072) and not said


def test_resnet_binary_is_the_papers_run_with_a_stand_in():
    rn = _load("resnet_binary")
    said = []
    cfg = rn.config_of(rn.arguments([]), log=said.append).resolve()
    assert "photos32" in said[0]
    m = cfg.model
    assert (cfg.data.name, cfg.data.d, cfg.data.n, m.name, m.train, m.train_lr) == ("photos32", 3072, 10, "resnet",
                                                                                   "all", 1e-5)
    assert (m.width, m.p) == (6269, 49 * 6269)  # p = 10 d n head parameters, width = p // 49 (rounded)
    quick = rn.config_of(rn.arguments(["--quick"]), log=said.append).resolve()
    assert (quick.data.name, quick.data.d, quick.data.n, quick.model.width, quick.attack.seeds) == ("photos16", 192,
                                                                                                   10, 78, 1)
