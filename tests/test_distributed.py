"""Several processes (jax.distributed on localhost, gloo CPU collectives): split sweeps, merged
results, a killed process, an attack over a mesh spanning processes, and the process flags."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jaxrecon import coordinator, distributed
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
    ((":1234", 2, 0), r"^--coordinator: must be HOST:PORT"),
    (("local host:1234", 2, 0), r"^--coordinator: must be HOST:PORT"),
    (("[::1]:x", 2, 0), r"^--coordinator: must be HOST:PORT"),
    (("localhost:1234", 2, 0, 0.0), r"^--init-timeout: must be a number of seconds"),
    (("localhost:1234", 2, 0, float("nan")), r"^--init-timeout: "),
    ((None, None, None, -1.0), r"^--init-timeout: "),
    (("localhost:1234", 2, 0, None, "0.0.0.0:1234"), r"^--coordinator-bind: must be an address"),
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


def test_coordinator_addresses_and_the_job_key(monkeypatch):
    assert distributed.split_address("localhost:29500") == ("localhost", 29500)
    assert distributed.split_address("[::1]:29500") == ("::1", 29500)
    assert distributed.split_address("10.0.0.1:1") == ("10.0.0.1", 1)
    assert distributed._bind_host("[::]") == "::" and distributed._bind_host("0.0.0.0") == "0.0.0.0"
    # the processes of one job give the same command apart from --process-id and --init-timeout
    monkeypatch.setattr(sys, "argv", ["jaxrecon", "sweep", "--d", "4", "--process-id", "0", "--init-timeout=5"])
    key = distributed._job_key()
    monkeypatch.setattr(sys, "argv", ["jaxrecon", "sweep", "--d", "4", "--process-id=1", "--coordinator", "h:1"])
    assert distributed._job_key() == key
    monkeypatch.setattr(sys, "argv", ["jaxrecon", "sweep", "--d", "5", "--process-id", "1"])
    assert distributed._job_key() != key
    assert distributed.resume_command() == "jaxrecon sweep --d 5 --process-id 1"


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


# -- the coordinator process's protocol (in a thread, no JAX service) ------------------------
class _Peer:
    """A fake process of the job talking to :func:`jaxrecon.coordinator.serve`."""

    def __init__(self, port, i, k=2, key="job", probe=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        hello = f"hello {coordinator.PROTOCOL} k={k} id={i} key={key} host=h pid={100 + i}"
        self.sock.sendall(f"{hello}{' probe=1' if probe else ''}\n".encode())

    def line(self) -> str:
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                return "<eof>"
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def send(self, text):
        self.sock.sendall(f"{text}\n".encode())


def _serve(k, timeout=10.0, key="job"):
    """A coordinator on a free loopback port in a thread; returns (port, thread, result list)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port, result = listener.getsockname()[1], []
    t = threading.Thread(target=lambda: result.append(coordinator.serve(
        listener, k, key, f"localhost:{port}", f"127.0.0.1:{port}", timeout, service=False)), daemon=True)
    t.start()
    return port, t, result


def test_coordinator_refuses_a_duplicate_id_another_k_and_another_job():
    port, t, result = _serve(3)
    p0, p1 = _Peer(port, 0, k=3), _Peer(port, 1, k=3)
    assert p0.line() == "waiting 2" and p1.line() == "waiting 1"
    other_k, other_job = _Peer(port, 2, k=2), _Peer(port, 2, k=3, key="other")
    assert other_k.line().startswith("error input --num-processes: this process says 2, but process 0")
    line = other_job.line()
    assert line.startswith("error input --coordinator: localhost:") and "runs another job" in line
    dup = _Peer(port, 1, k=3)
    for p in (p0, p1, dup):  # every process of the job gets the one line, and the job ends
        line = p.line()
        while line.startswith("waiting"):
            line = p.line()
        assert line.startswith("error input --process-id: 1 was given to two processes (pid 101 on h and pid 101")
    t.join(10)
    assert result == [1]


def test_a_second_process_0_ends_the_job_another_jobs_probe_does_not():
    port, t, result = _serve(2)
    other = _Peer(port, 0, key="other", probe=True)  # process 0 of another job, on the same port by mistake
    assert "runs another job" in other.line()
    p1 = _Peer(port, 1)
    assert p1.line() == "waiting 1"
    dup = _Peer(port, 0, probe=True)  # a second process 0 of this job (the first holds the port)
    for p in (p1, dup):
        assert p.line().startswith("error input --process-id: 0 was given to two processes (pid ")
    t.join(10)
    assert result == [1]


def test_coordinator_names_the_missing_processes_when_its_timeout_expires():
    port, t, result = _serve(3, timeout=0.5)
    p2 = _Peer(port, 2, k=3)
    assert p2.line() == "waiting 2"
    line = p2.line()
    assert line.startswith("error job --init-timeout: waited 0.5 s for processes 0, 1 of 3"), line
    t.join(10)
    assert result == [1]


def test_coordinator_ends_the_handshake_when_process_0_leaves_it():
    port, t, result = _serve(3, timeout=60)
    p1, p0 = _Peer(port, 1, k=3), _Peer(port, 0, k=3)
    assert p1.line() == "waiting 2" and p1.line() == "waiting 1"
    p0.sock.close()  # e.g. Ctrl-C: the others are told at once, not after the timeout
    assert p1.line().startswith("error job --coordinator: process 0 (which runs the coordinator at localhost:")
    t.join(10)
    assert result == [1]


def test_coordinator_relays_departures_and_passes_barriers_over_them():
    port, t, result = _serve(3)
    peers = [_Peer(port, i, k=3) for i in range(3)]
    for p in peers:
        line = p.line()
        while line.startswith("waiting"):
            line = p.line()
        assert line == "go"
    peers[0].send("barrier a")
    peers[1].send("barrier a")
    peers[2].send("bye")
    peers[2].sock.close()  # exited after its bye, without reaching the barrier: it is passed
    assert [peers[0].line(), peers[0].line()] == ["gone 2 exited", "pass a"]
    assert [peers[1].line(), peers[1].line()] == ["gone 2 exited", "pass a"]
    peers[1].sock.close()  # killed: no bye
    assert peers[0].line() == "gone 1 died"
    peers[0].send("barrier b")
    assert peers[0].line() == "pass b"
    peers[0].sock.close()
    t.join(10)
    assert result == [0] and not t.is_alive()


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
    """Process 1 killed mid-run: process 0 finishes its share, its rows flushed and marked, then
    exits with one line naming process 1 and the command that resumes (never a native abort);
    rerunning completes the sweep without duplicates."""
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
        procs[0].wait(timeout=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    log0 = (tmp_path / "process0.log").read_text()
    assert killed_mid_way, (tmp_path / "process1.log").read_text()[-2000:]
    assert procs[0].returncode == 1, log0[-3000:]
    errors = [line for line in log0.splitlines() if line.startswith("jaxrecon: error:")]
    assert len(errors) == 1 and "Traceback" not in log0, log0[-3000:]
    assert "process 1 of 2 died" in errors[0] and "to resume, run the same command" in errors[0]
    assert "jaxrecon sweep --d 4,5" in errors[0] and "--process-id 0" in errors[0]
    marker = json.loads((out / "shards" / "done.0").read_text())  # written after its last row
    assert marker["units_run"] == marker["units"] > 0
    before = read_results(out)
    assert 2 <= len(before["p"]) < 16  # some rows landed in the shards, not all
    _wait(_launch(["sweep", *FLAGS, "--out", str(out)], 2, tmp_path), tmp_path)
    after = read_results(out / "results.csv")
    keys = list(zip(after["d"].tolist(), after["p"].tolist(), after["seed"].tolist()))
    assert len(keys) == len(set(keys)) == 16
    _close(reference, after)


# -- faults at the start of a job: one line each, in seconds ---------------------------------
FAIL_FAST = ["sweep", "--d", "4", "--n", "2", "--p", "8", "--method", "adam", "--seeds", "1", "--steps", "10",
             "--quiet", "--no-plot", "--bootstrap", "0"]


def _start(tmp_path, port, k, i, tag, *extra):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXRECON_CACHE_DIR": "off"}
    cmd = [sys.executable, "-m", "jaxrecon.cli", *FAIL_FAST, "--out", str(tmp_path / "out"), "--coordinator",
           f"localhost:{port}", "--num-processes", str(k), "--process-id", str(i), *extra]
    with open(tmp_path / f"{tag}.log", "w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=f)


def _one_line_failure(proc, tmp_path, tag, within: float) -> str:
    """The one error line of a process that must fail (non-zero, not natively) within ``within`` s."""
    try:
        proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{tag}: still running after {within} s: {(tmp_path / f'{tag}.log').read_text()[-1500:]}")
    err = (tmp_path / f"{tag}.log").read_text()
    errors = [line for line in err.splitlines() if line.startswith("jaxrecon: error:")]
    assert proc.returncode in (1, 2) and len(errors) == 1 and "Traceback" not in err, (proc.returncode, err[-2000:])
    return errors[0]


def _listening(port: int) -> list:
    """The addresses listening on TCP ``port`` of this machine (``/proc/net/tcp``, ``tcp6``)."""
    import ipaddress

    found = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            ip_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # LISTEN
                raw = bytes.fromhex(ip_hex)
                raw = b"".join(raw[j:j + 4][::-1] for j in range(0, len(raw), 4))  # words in host order
                ip = ipaddress.ip_address(raw)
                found.append(getattr(ip, "ipv4_mapped", None) or ip)
    return found


def test_a_taken_port_is_one_line_for_every_process(tmp_path):
    with socket.socket() as holder:  # another program holds the port (and never answers)
        holder.bind(("127.0.0.1", 0))
        holder.listen(4)
        port = holder.getsockname()[1]
        procs = {f"p{i}": _start(tmp_path, port, 2, i, f"p{i}", "--init-timeout", "3") for i in (0, 1)}
        errors = {tag: _one_line_failure(p, tmp_path, tag, 120) for tag, p in procs.items()}
    assert errors["p0"].startswith(f"jaxrecon: error: --coordinator: port {port} is already in use on localhost")
    assert errors["p1"].startswith("jaxrecon: error: --init-timeout: no answer from the coordinator at localhost:")
    assert not (tmp_path / "out").exists()


def test_a_missing_process_is_named_after_init_timeout_and_the_coordinator_listens_on_loopback(tmp_path):
    port = _free_port()
    p0 = _start(tmp_path, port, 2, 0, "p0", "--init-timeout", "5")
    seen, deadline = [], time.time() + 120
    while not seen and p0.poll() is None and time.time() < deadline:
        seen = _listening(port)
        time.sleep(0.05)
    error = _one_line_failure(p0, tmp_path, "p0", 120)
    assert seen and all(ip.is_loopback for ip in seen), seen  # --coordinator localhost: loopback only
    assert "jaxrecon: waiting for 1 of 2 processes (timeout 5 s)" in (tmp_path / "p0.log").read_text()
    assert error.startswith("jaxrecon: error: --init-timeout: waited 5 s for process 1 of 2, which never reached")


def test_a_process_id_given_twice_ends_the_job_in_seconds(tmp_path):
    port = _free_port()
    procs = {f"p{i}_{n}": _start(tmp_path, port, 3, i, f"p{i}_{n}", "--init-timeout", "300")
             for n, i in enumerate((0, 1, 1))}
    t0 = time.time()
    errors = [_one_line_failure(p, tmp_path, tag, 120) for tag, p in procs.items()]
    assert time.time() - t0 < 120  # not the 300 s init timeout
    for e in errors:  # every process of the job says so and exits
        assert e.startswith("jaxrecon: error: --process-id: 1 was given to two processes"), e


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
