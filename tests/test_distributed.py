"""Several processes (jax.distributed on localhost, gloo CPU collectives): split sweeps, merged
results, a killed process, an attack over a mesh spanning processes, and the process flags."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxrecon import distributed
from jaxrecon.cli import main
from jaxrecon.sweeps import COLUMNS, SweepConfig, grid, read_results, rows_text, sweep
from jaxrecon.sweeps import shards as sweep_shards
from jaxrecon.sweeps.split import assign, remaining_units, split
from jaxrecon.sweeps.store import _HEADER

ROOT = Path(__file__).resolve().parents[1]
# Tiny float64 sweep, one (d, n) curve padded to one program; the flags give the same config.
# Two curves: two compiled programs, so the split gives each process one.
GRID = dict(name="tiny", d=[4, 5], n=[2], p_over_dn=[0.5, 1, 2, 4], method=["adam"], seeds=2, steps=2000,
            pad_p="max", x64=True)
FLAGS = ["--d", "4,5", "--n", "2", "--p-over-dn", "0.5,1,2,4", "--method", "adam", "--seeds", "2",
         "--steps", "2000", "--pad-p", "max", "--x64", "--name", "tiny", "--quiet", "--no-plot", "--bootstrap", "20"]
NUMERIC = [c for c in COLUMNS if c not in ("seconds", "compile_seconds")]


# -- flags and detection (no processes) ------------------------------------------------------
@pytest.mark.parametrize("flags, match", [
    (("localhost:1234", 2, 2), r"^--process-id: must be in \[0, 2\)"),
    (("localhost:1234", 2, -1), r"^--process-id: "),
    (("localhost:1234", 0, 0), r"^--num-processes: must be a positive integer"),
    ((None, 2, 0), r"^--coordinator: missing"),
    (("localhost:1234", None, 0), r"^--num-processes: missing"),
    (("localhost", 2, 0), r"^--coordinator: must be HOST:PORT"),
    (("localhost:99999", 2, 0), r"^--coordinator: must be HOST:PORT"),
])
def test_bad_process_flags_are_one_line_errors(flags, match):
    with pytest.raises(ValueError, match=match) as e:
        distributed.check_flags(distributed.ProcessFlags(*flags))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("command", ["sweep", "reconstruct"])
def test_cli_refuses_a_wrong_process_id(command, capsys):
    args = [command, "--d", "4", "--n", "2", "--p", "8", "--coordinator", "localhost:1234", "--num-processes", "2",
            "--process-id", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("jaxrecon: error: --process-id: must be in [0, 2)")


def test_cluster_detection_and_single_process_defaults():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
    assert distributed.detected_cluster({**slurm, "SLURM_NTASKS": "4"}) == ("SLURM", 4)
    assert distributed.detected_cluster({**slurm, "SLURM_NTASKS": "1"}) is None  # one task: run alone
    assert distributed.detected_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) is None  # sbatch, no srun
    ompi = {"OMPI_MCA_orte_hnp_uri": "1.2.3.4:5", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}
    assert distributed.detected_cluster(ompi) == ("Open MPI", 2)
    assert distributed.detected_cluster({}) is None
    assert not distributed.initialize(distributed.ProcessFlags())  # nothing given, nothing detected
    assert distributed.process_count() == 1 and distributed.process_index() == 0
    assert len(distributed.mesh_devices(1)) == 1


# -- the split (pure) ------------------------------------------------------------------------
def _program(u):
    return (u.point.d, u.point.n, len(u.seeds))


def test_split_is_deterministic_complete_and_balanced():
    cfg = SweepConfig(d=[10, 20], n=[4], p_over_dn=[0.5, 1, 2, 4], seeds=6, steps=100).resolved()
    points = grid(cfg)
    done = {points[0].key(): {0, 1, 2, 3, 4, 5}, points[1].key(): {1, 4}}
    for k in (1, 2, 3, 4):
        shares = split(points, 6, done, k, 100, _program, compile_cost=0.0)  # runs only
        assert shares == split(points, 6, done, k, 100, _program, compile_cost=0.0)  # same inputs, same split
        keys = [(u.point.key(), s) for share in shares for u in share for s in u.seeds]
        want = [(pt.key(), s) for pt in points for s in range(6) if s not in done.get(pt.key(), ())]
        assert sorted(keys) == sorted(want) and len(keys) == len(set(keys))  # every missing seed once
        loads = [sum(u.cost(100) for u in share) for share in shares]
        assert max(loads) <= 1.6 * sum(loads) / k  # balanced (largest point: d=20, p=4dn, 6 seeds)
    # tiny points, compiling dominates: each program is compiled by one process only
    shares = split(points, 6, done, 2, 100, _program)
    programs = [{_program(u) for u in share} for share in shares]
    assert all(programs) and not programs[0] & programs[1]
    one = split(points, 6, done, 1, 100, _program)[0]  # one process: whole points in grid order
    assert [u.index for u in one] == list(range(1, len(points))) and one[0].seeds == (0, 2, 3, 5)


def test_a_large_point_is_split_by_seeds():
    cfg = SweepConfig(d=[10], n=[4], p=[10, 4000], seeds=4, steps=10).resolved()
    units = remaining_units(grid(cfg), 4, {})
    assert [(u.point.p, u.seeds) for u in units] == [(10, (0, 1, 2, 3)), (4000, (0, 1, 2, 3))]
    shares = assign(units, 2, 10, _program, compile_cost=0.0)
    assert sorted([(u.point.p, u.seeds) for u in share] for share in shares) == \
        [[(10, (0, 1, 2, 3)), (4000, (0, 1))], [(4000, (2, 3))]]
    whole = assign(units, 2, 10, _program)  # compiling dominates: cutting would not pay
    assert sorted(len(share) for share in whole) == [0, 2]


# -- shard files (pure) ----------------------------------------------------------------------
def _row(p, seed, loss=0.5):
    return {"d": 4, "n": 2, "p": p, "p_over_dn": p / 8, "activation": "relu", "method": "adam", "seed": seed,
            "train_loss": 0.0, "loss": loss, "error_abs": 0.1, "error_sign": 0.1, "residual": 0.0, "recovered": 0.0,
            "steps": 10, "status": "budget", "seconds": 1.0, "compile_seconds": 0.0}


def test_shards_read_as_a_union_and_merge_in_grid_order(tmp_path):
    cfg = SweepConfig(d=[4], n=[2], p=[4, 16], activation=["relu"], method=["adam"], seeds=2).resolved()
    points = grid(cfg)
    (tmp_path / "results.csv").write_text(_HEADER + rows_text([_row(16, 1)]))
    s0 = sweep_shards.open_shard(tmp_path, 0)
    s1 = sweep_shards.open_shard(tmp_path, 1)
    s0.write_text(_HEADER + rows_text([_row(16, 0), _row(4, 1)]) + "4,2,4,0.5,re")  # a killed write
    s1.write_text(_HEADER + rows_text([_row(16, 1), _row(4, 0)]))  # (16, 1) also in results.csv
    sweep_shards.open_shard(tmp_path, 0)  # reopening cuts the partial line
    assert s0.read_text().endswith("\n") and s0.read_text().count("\n") == 3
    t = read_results(tmp_path)  # the union, each (point, seed) once
    assert sorted(zip(t["p"].tolist(), t["seed"].tolist())) == [(4, 0), (4, 1), (16, 0), (16, 1)]
    assert sweep_shards.done_seeds(tmp_path, cfg, points) == {points[0].key(): {0, 1}, points[1].key(): {0, 1}}
    done = sweep_shards.merge_shards(tmp_path, cfg, points)
    assert len(done) == 2 and not (tmp_path / "shards").exists()
    t = read_results(tmp_path / "results.csv")
    assert list(zip(t["p"].tolist(), t["seed"].tolist())) == [(4, 0), (4, 1), (16, 0), (16, 1)]


# -- several processes -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(args, k, logs: Path, devices: int = 1):
    """Start ``jaxrecon ARGS`` as ``k`` processes on localhost; their output goes to ``logs``."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    procs = []
    for i in range(k):
        cmd = [sys.executable, "-m", "jaxrecon.cli", *args, "--coordinator", f"localhost:{port}",
               "--num-processes", str(k), "--process-id", str(i)]
        with open(logs / f"process{i}.log", "w") as f:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT))
    return procs


def _wait(procs, logs: Path, timeout: float = 400):
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    tails = "\n".join(f.read_text()[-1500:] for f in sorted(logs.glob("process*.log")))
    assert [p.returncode for p in procs] == [0] * len(procs), tails


def _close(t1, t2):
    assert len(t1["p"]) == len(t2["p"])
    for c in NUMERIC:
        if t1[c].dtype.kind == "f":
            np.testing.assert_allclose(t1[c], t2[c], rtol=1e-6, atol=1e-9, err_msg=c)
        else:
            assert t1[c].tolist() == t2[c].tolist(), c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process sweep the split runs must equal."""
    return sweep(SweepConfig(**GRID), out=tmp_path_factory.mktemp("ref"), progress=False, plots=False, log=None)


def test_two_processes_equal_one(tmp_path, reference):
    out = tmp_path / "out"
    _wait(_launch(["sweep", *FLAGS, "--out", str(out)], 2, tmp_path), tmp_path)
    merged = read_results(out / "results.csv")
    keys = list(zip(merged["d"].tolist(), merged["p"].tolist(), merged["seed"].tolist()))
    assert len(keys) == len(set(keys)) == 16  # every (point, seed) exactly once
    _close(reference, merged)  # row for row, in grid order
    assert not (out / "shards").exists() and (out / "thresholds.csv").exists()
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["finished"] and meta["runs"][-1]["points_run"] == 8
    logs = [(tmp_path / f"process{i}.log").read_text() for i in (0, 1)]
    assert all("4 of 8 unit(s) left" in log for log in logs)  # one curve each


def test_killed_process_then_rerun_completes_without_duplicates(tmp_path, reference):
    out = tmp_path / "out"
    shard1 = out / "shards" / "results.1.csv"
    procs = _launch(["sweep", *FLAGS, "--out", str(out)], 2, tmp_path)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and procs[1].poll() is None:
            if shard1.exists() and shard1.read_bytes().count(b"\n") >= 2:  # header + a row
                break
            time.sleep(0.01)
        killed_mid_way = procs[1].poll() is None
        procs[1].send_signal(signal.SIGKILL)
        # JAX's coordination service would end process 0 after its heartbeat timeout; do it now
        procs[0].send_signal(signal.SIGKILL)
    finally:
        for p in procs:
            p.wait()
    assert killed_mid_way, (tmp_path / "process1.log").read_text()[-2000:]
    before = read_results(out)
    assert 2 <= len(before["p"]) < 16  # some rows landed in the shards, not all
    _wait(_launch(["sweep", *FLAGS, "--out", str(out)], 2, tmp_path), tmp_path)
    after = read_results(out / "results.csv")
    keys = list(zip(after["d"].tolist(), after["p"].tolist(), after["seed"].tolist()))
    assert len(keys) == len(set(keys)) == 16
    _close(reference, after)


def test_attack_over_two_processes_of_two_devices_equals_one_device(tmp_path):
    from jaxrecon.runner import ReconstructConfig, run_reconstruction

    args = ["--d", "8", "--n", "4", "--p", "96", "--block-size", "16", "--steps", "60", "--seeds", "2",
            "--method", "adam", "--x64", "--quiet"]
    out = tmp_path / "run"
    _wait(_launch(["reconstruct", *args, "--shards", "4", "--out", str(out)], 2, tmp_path, devices=2), tmp_path)
    assert "shards=4" in json.loads((out / "summary.json").read_text())["model"]
    sharded = [r["loss"] for r in json.loads((out / "summary.json").read_text())["results"]]
    cfg = ReconstructConfig(d=8, n=4, p=96, block_size=16, steps=60, seeds=2, method="adam", x64=True)
    one = [r["loss"] for r in run_reconstruction(cfg, out=None, progress=False, log=None)["results"]]
    np.testing.assert_allclose(sharded, one, rtol=1e-6)


def test_one_process_folds_in_the_shards_a_multi_process_run_left(tmp_path):
    from jaxrecon.sweeps import prepare_out

    cfg = SweepConfig(d=[4], n=[2], p=[4, 16], activation=["relu"], method=["adam"], seeds=2).resolved()
    points = grid(cfg)
    assert prepare_out(tmp_path, cfg, points) == {}
    sweep_shards.open_shard(tmp_path, 1).write_text(_HEADER + rows_text([_row(16, 0), _row(16, 1), _row(4, 1)]))
    done = prepare_out(tmp_path, cfg, points)  # (16) complete; (4) has one seed: rerun whole, as one process does
    assert list(done) == [points[1].key()] and not (tmp_path / "shards").exists()
    assert read_results(tmp_path)["seed"].tolist() == [0, 1]


def test_a_unit_cut_by_seeds_gives_those_seeds_rows_of_the_full_point():
    """The seed-split path (a large point shared by processes) runs the sweep's compiled program on
    a subset of seeds: its rows equal the same seeds' rows of a full run of the point."""
    from jaxrecon.sweeps import SweepConfig
    from jaxrecon.sweeps.points import ProgramCache, compiled_program, grid, point_rows, run_point
    from jaxrecon.sweeps.run import _run_seeds, _unit_program
    from jaxrecon.sweeps.split import Unit

    resolved = SweepConfig(grid=dict(d=[5], n=[3], p_over_dn=[3], method=["adam-lm"]),
                           attack=dict(seeds=4, steps=100)).resolved()
    points = grid(resolved)
    unit = Unit(0, points[0], (1, 3))
    width, sub, _ = _unit_program(unit, resolved, points)
    rows, _ = _run_seeds(unit, resolved, width, compiled_program(unit.point, sub, width, True, ProgramCache()))
    full = point_rows(points[0], run_point(points[0], resolved, width))
    assert [r["seed"] for r in rows] == [1, 3]
    for r in rows:
        assert {k: r[k] for k in ("loss", "error_sign", "steps", "status")} == \
               {k: full[r["seed"]][k] for k in ("loss", "error_sign", "steps", "status")}
