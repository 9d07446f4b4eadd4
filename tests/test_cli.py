import json
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxrecon import __version__
from jaxrecon.cli import main


def test_reconstruct_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["reconstruct", "--d", "8", "--n", "3", "--p-over-dn", "30", "--seeds", "2", "--steps",
               "2000", "--method", "adam", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "error_sign" in printed and "seed" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["p"] == 720 and summary["config"]["seeds"] == 2
    for k in ("jaxrecon", "jax", "jaxlib", "optax", "flax", "numpy", "python", "device"):
        assert k in summary["versions"]
    assert len(summary["results"]) == 2
    for row in summary["results"]:
        for k in ("seed", "loss", "error_abs", "error_sign", "train_loss", "steps", "seconds"):
            assert k in row
        assert row["error_sign"] < 1e-2
        # solved / identified with the tolerances the summary records
        assert row["solved"] == (row["loss"] <= summary["solved_tolerance"])
        assert row["identified"] == (row["error_sign"] <= summary["identified_tolerance"])
    assert summary["solved_tolerance"] == 1e-10 and summary["identified_tolerance"] == 1e-3  # adam, float32
    assert "solved" in printed and "identified" in printed
    arrays = np.load(out / "arrays.npz")
    assert arrays["x"].shape == (3, 8) and arrays["y"].shape == (3,) and arrays["x_hat"].shape == (2, 3, 8)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("args,msg", [
    (["--d", "0", "--n", "3", "--p", "10"], "d: must be a positive integer"),
    (["--n", "3", "--p", "0"], "p: must be a positive integer"),
    (["--n", "3", "--p", "10", "--optimizer", "nope"], "optimizer: unknown optax optimiser"),
    (["--n", "3"], "p: give --p or --p-over-dn"),
    (["--n", "3", "--p", "10", "--p-over-dn", "2"], "p: give only one of --p and --p-over-dn"),
    (["--data.d", "0", "--data.n", "3", "--model.p", "10"], "d: must be a positive integer"),  # dotted flags
    (["--n", "3", "--attack.steps", "0", "--p", "10"], "steps: must be a positive integer"),
])
def test_bad_input_exits_2_with_one_line(args, msg, capsys):
    assert main(["reconstruct", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0] and "Traceback" not in err[0]


def test_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["reconstruct", "--d", "4", "--n", "2", "--p", "50", "--out", str(f), "--quiet"]) == 2
    assert "out:" in capsys.readouterr().err


def test_console_script_version_and_help():
    r = subprocess.run([sys.executable, "-m", "jaxrecon.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "jaxrecon.cli", "reconstruct", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--block-size" in r.stdout


def test_default_seeds_synthetic_4_images_1():
    from jaxrecon.runner import ReconstructConfig

    assert ReconstructConfig(d=8, n=3, p=100).resolve().seeds == 4
    assert ReconstructConfig(data="digits", n=4, p_over_dn=8).resolve().seeds == 1
    assert ReconstructConfig(data="digits", n=4, p_over_dn=8, seeds=3).resolve().seeds == 3


@pytest.mark.parametrize("args,msg", [
    (["--memory-budget", "lots"], "--memory-budget: must be a size"),
    (["--memory-budget", "1GB", "--block-size", "10"], "--memory-budget: give only one"),
    (["--shards", "2"], "shards: sharding the features needs a streamed map"),
    (["--block-size", "10", "--shards", "64"], "shards: 64 devices requested"),
])
def test_scale_flags_bad_input(args, msg, capsys):
    assert main(["reconstruct", "--d", "4", "--n", "2", "--p", "50", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0], err


SWEEP_FLAGS = {"--name", "--d", "--n", "--p", "--p-over-n", "--p-over-dn", "--activation", "--method", "--seeds",
               "--seed", "--steps", "--optimizer", "--lr", "--x64", "--no-x64", "--block-size", "--noise", "--ridge",
               "--pad-p", "--bootstrap", "--out", "--no-plot", "--quiet"}


def _sweep_config(argv, tmp_path=None):
    """The SweepConfig `jaxrecon sweep ARGV` would run (built as _cmd_sweep builds it, nothing run)."""
    from jaxrecon.cli import build_parser
    from jaxrecon.config import given_args
    from jaxrecon.sweeps import SweepConfig, load_config

    args = build_parser().parse_args(["sweep", *argv])
    base = load_config(args.config) if args.config else SweepConfig()
    return base.override(given_args(SweepConfig, args)), args


def test_sweep_flags_generated_keep_the_old_spellings(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    options = set(re.findall(r"--[a-z][a-z0-9_.-]*", capsys.readouterr().out))
    assert SWEEP_FLAGS <= options
    assert {"--grid.d", "--grid.p_over_dn", "--attack.steps", "--attack.lr", "--scale.pad_p", "--data.noise",
            "--model.ridge"} <= options


def test_sweep_list_and_dotted_flags():
    cfg, args = _sweep_config(["--d", "10,20", "--n", "4", "--p-over-dn", "0.5,1,2", "--activation", "relu,tanh",
                               "--method", "adam", "--attack.steps", "500", "--lr", "0.1", "--x64", "--pad-p", "max",
                               "--bootstrap", "7", "--quiet"])
    assert (cfg.grid.d, cfg.grid.n, cfg.grid.p_over_dn) == ((10, 20), (4,), (0.5, 1.0, 2.0))
    assert cfg.grid.activation == ("relu", "tanh") and cfg.grid.method == ("adam",)
    assert (cfg.attack.steps, cfg.attack.first_order.lr, cfg.scale.x64, cfg.scale.pad_p) == (500, 0.1, True, "max")
    assert args.bootstrap == 7 and args.quiet and not args.no_plot
    assert _sweep_config(["--grid.d", "7", "--steps", "3"])[0].d == (7,)
    with pytest.raises(SystemExit):
        _sweep_config(["--d", "1,x"])  # argparse: "grid.d: must be a comma-separated list of int"
    with pytest.raises(SystemExit):
        _sweep_config(["--pad-p", "sometimes"])


def test_sweep_flags_override_a_config_file(tmp_path):
    """A user's file may return a dict (flat or in sections); --p-over-n replaces its p_over_dn."""
    f = tmp_path / "cfg.py"
    f.write_text("def get_config():\n    return {'name': 'mine', 'grid': {'d': [4], 'n': [2], 'p_over_dn': [1, 2]},"
                 " 'x64': True, 'steps': 9}\n")
    cfg, _ = _sweep_config([str(f), "--p-over-n", "3", "--no-x64", "--seeds", "2"])
    assert cfg.name == "mine" and cfg.steps == 9 and cfg.seeds == 2 and cfg.d == (4,)
    assert (cfg.p_over_n, cfg.p_over_dn, cfg.x64) == ((3.0,), None, False)
    r = _sweep_config([str(f)])[0].resolved()
    assert r.p_over_dn == (1.0, 2.0) and r.x64 is True


def test_sweep_two_ways_of_p_is_one_line_error(tmp_path, capsys):
    assert main(["sweep", "--d", "4", "--n", "2", "--p", "5", "--p-over-dn", "1", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p: give only one of p, p_over_n, p_over_dn" in err[0], err

def test_jax_floor_is_the_version_tested():
    import re
    from pathlib import Path

    import jax
    import jaxlib

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    for name, mod in (("jax", jax), ("jaxlib", jaxlib)):
        floor = re.search(rf'"{name}>=([0-9.]+)"', text).group(1)
        as_tuple = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:3])
        # the floor is the oldest version tested (0.10.2) and not above the one installed
        assert (0, 10, 2) <= as_tuple(floor) <= as_tuple(mod.__version__), floor
