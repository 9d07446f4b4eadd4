"""Reliability cases of multi-process runs (``--coordinator``, ``--num-processes``, ``--process-id``,
``--init-timeout``, ``--coordinator-bind``): bad flag values (one process, failing before any work),
and jobs of several local processes with a fault: a taken port, a process that never starts, a
``--process-id`` given twice, another ``--num-processes``, a killed process, a Ctrl-C while
waiting, and the address the coordinator listens on. Every process of a faulty job must end
within seconds (its timeout plus start-up), with one ``jaxrecon:`` line, never natively."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from ._case import Case, command, judge

AREA = "multiprocess"
TINY = ("--d", "4", "--n", "2", "--p-over-dn", "1", "--method", "adam", "--seeds", "1", "--steps", "50", "--quiet")
SWEEP = ("sweep",) + TINY + ("--no-plot", "--bootstrap", "0", "--out", "{dir}/out")
RECON = ("reconstruct",) + TINY + ("--out", "{dir}/run")
# a sweep with work for both processes (two curves, one program each): a kill lands mid-run
LONG = ("sweep", "--d", "4,5", "--n", "2", "--p-over-dn", "0.5,1,2,4", "--method", "adam", "--seeds", "2",
        "--steps", "2000", "--pad-p", "max", "--x64", "--quiet", "--no-plot", "--bootstrap", "0", "--out", "{dir}/out")
#: Seconds a process may take beyond its --init-timeout to start, fail and say so (a loaded machine).
SLACK = 45.0
#: JAXRECON_REL_LEGACY=1: the jobs run without the flags an older jaxrecon lacks (--init-timeout),
#: to record how it behaved (its own 300 s timeout then exceeds each case's limit: a hang).
LEGACY = os.environ.get("JAXRECON_REL_LEGACY") == "1"


def _job(port, k, i, *extra) -> tuple:
    return ("--coordinator", f"localhost:{port}", "--num-processes", str(k), "--process-id", str(i)) + tuple(extra)


def _flag_case(name, extra, mention, base=SWEEP):
    return Case(name, AREA, argv=base + tuple(extra), mention=tuple(mention), forbid=("out", "run"))


# -- several processes -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Proc:
    """One ``jaxrecon`` process of a case, its output in ``workdir/pN.out|err``."""

    def __init__(self, workdir: Path, tag: str, argv):
        self.tag, self.workdir = tag, workdir
        argv = [a.replace("{dir}", str(workdir)) for a in argv]
        if LEGACY and "--init-timeout" in argv:
            at = argv.index("--init-timeout")
            argv = argv[:at] + argv[at + 2:]
        env = {**os.environ, "JAXRECON_CACHE_DIR": "off", "JAX_PLATFORMS": "cpu"}
        self.out = open(workdir / f"{tag}.out", "w")
        self.err_path = workdir / f"{tag}.err"
        self.err = open(self.err_path, "w")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(command() + argv, cwd=workdir, env=env, stdout=self.out, stderr=self.err,
                                  stdin=subprocess.DEVNULL, text=True)
        self.seconds = None

    def wait(self, deadline: float) -> bool:
        try:
            self.p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        finally:
            if self.seconds is None and self.p.returncode is not None:
                self.seconds = time.monotonic() - self.t0
        return True

    def result(self) -> subprocess.CompletedProcess:
        self.out.close()
        self.err.close()
        out = (self.workdir / f"{self.tag}.out").read_text()
        return subprocess.CompletedProcess(self.p.args, self.p.returncode, out, self.err_path.read_text())

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def _finish(workdir: Path, procs: dict, expect: dict, limit: float, extra_check=None) -> tuple:
    """Wait up to ``limit`` s for every process, then judge each (``expect[tag]``: a
    ``Case`` giving ``expect``/``mention``/``check``); the first non-clean outcome is the case's."""
    deadline = time.monotonic() + limit
    hung = [tag for tag, pr in procs.items() if not pr.wait(deadline)]
    for pr in procs.values():
        pr.kill()
    if hung:
        return "bad", f"{', '.join(hung)}: no exit within {limit:.0f} s (hang)"
    details = []
    for tag, pr in procs.items():
        outcome, detail = judge(expect[tag], workdir, pr.result())
        if outcome != "clean":
            return outcome, f"{tag} (exit {pr.p.returncode}): {detail}"
        details.append(f"{tag}: exit {pr.p.returncode} in {pr.seconds:.0f}s: {detail[:120]}")
    if extra_check is not None:
        problem = extra_check(workdir, procs)
        if problem:
            return "misleading", problem
    return "clean", " | ".join(details)


def _expect(mention=(), ok=False, check=None) -> Case:
    return Case("-", AREA, expect="ok" if ok else "error", mention=tuple(mention), check=check)


def _said(text):
    def check(workdir, proc):
        return None if text in proc.stderr else f"stderr does not say {text!r}"
    return check


def _run_taken_port(all_interfaces: bool):
    def run(workdir: Path):
        port = _free_port()
        holder = socket.socket()
        holder.bind(("0.0.0.0" if all_interfaces else "127.0.0.1", port))
        holder.listen(8)  # holds the port and never answers
        try:
            procs = {f"p{i}": _Proc(workdir, f"p{i}", SWEEP + _job(port, 2, i, "--init-timeout", "5")) for i in (0, 1)}
            return _finish(workdir, procs, {"p0": _expect(("--coordinator", str(port))),
                                            "p1": _expect(("--coordinator",))}, 5 + SLACK)
        finally:
            holder.close()
    return run


def _run_missing(ids, k, mention_by_id, command_=SWEEP, timeout=4):
    def run(workdir: Path):
        port = _free_port()
        procs = {f"p{i}": _Proc(workdir, f"p{i}", command_ + _job(port, k, i, "--init-timeout", str(timeout)))
                 for i in ids}
        return _finish(workdir, procs, {f"p{i}": _expect(mention_by_id[i]) for i in ids}, timeout + SLACK)
    return run


def _run_duplicate(ids, k, dup):
    def run(workdir: Path):
        port = _free_port()
        procs = {}
        for n, i in enumerate(ids):
            procs[f"p{i}_{n}"] = _Proc(workdir, f"p{i}_{n}", SWEEP + _job(port, k, i, "--init-timeout", "30"))
        return _finish(workdir, procs, {tag: _expect(("--process-id", str(dup))) for tag in procs}, 30 + SLACK)
    return run


def _run_other_k(workdir: Path):
    port = _free_port()
    procs = {"p0": _Proc(workdir, "p0", SWEEP + _job(port, 2, 0, "--init-timeout", "8")),
             "p1": _Proc(workdir, "p1", SWEEP + _job(port, 3, 1, "--init-timeout", "8"))}
    return _finish(workdir, procs, {"p0": _expect(("process 1", "--init-timeout")),
                                    "p1": _expect(("--num-processes", "3"))}, 8 + SLACK)


def _run_other_arguments(workdir: Path):
    port = _free_port()
    other = tuple("60" if a == "50" else a for a in SWEEP)  # --steps 60
    procs = {"p0": _Proc(workdir, "p0", SWEEP + _job(port, 2, 0, "--init-timeout", "8")),
             "p1": _Proc(workdir, "p1", other + _job(port, 2, 1, "--init-timeout", "8"))}
    return _finish(workdir, procs, {"p0": _expect(("process 1", "--init-timeout")),
                                    "p1": _expect(("--coordinator", "another job"))}, 8 + SLACK)


def _listening(port: int) -> list:
    """The addresses listening on ``port`` on this machine (``/proc/net/tcp``, ``tcp6``)."""
    found = []
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, state = fields[1], fields[3]
            ip_hex, port_hex = addr.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(ip_hex)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[j:j + 4][::-1] for j in range(0, len(raw), 4))
            import ipaddress

            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            found.append(ip)
    return found


def _run_loopback(workdir: Path):
    port = _free_port()
    p0 = _Proc(workdir, "p0", SWEEP + _job(port, 2, 0, "--init-timeout", "15"))
    deadline, seen = time.monotonic() + 15 + SLACK, []
    while time.monotonic() < deadline and p0.p.poll() is None and not seen:
        seen = _listening(port)
        time.sleep(0.1)
    outcome = _finish(workdir, {"p0": p0}, {"p0": _expect(("process 1", "--init-timeout"))}, 15 + SLACK)
    if not seen:
        return "misleading", f"nothing listened on port {port} while process 0 waited"
    open_ = [str(ip) for ip in seen if not ip.is_loopback]
    if open_:
        return "bad", f"--coordinator localhost:{port} listens on {', '.join(open_)} (not loopback)"
    return outcome[0], f"listens on {', '.join(map(str, seen))}; " + outcome[1]


def _run_sigint_while_waiting(workdir: Path):
    port = _free_port()
    p0 = _Proc(workdir, "p0", SWEEP + _job(port, 2, 0, "--init-timeout", "120"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "waiting for" not in p0.err_path.read_text() and p0.p.poll() is None:
        time.sleep(0.1)
    sent = time.monotonic()
    p0.p.send_signal(signal.SIGINT)
    outcome = _finish(workdir, {"p0": p0}, {"p0": _expect(("interrupt",))}, 20)
    if outcome[0] == "clean" and p0.p.returncode != 130:
        return "misleading", f"exit {p0.p.returncode} after SIGINT, not 130"
    if outcome[0] == "clean" and time.monotonic() - sent > 15:
        return "misleading", f"{time.monotonic() - sent:.0f} s to stop after SIGINT"
    return outcome


def _run_late_peer(workdir: Path):
    port = _free_port()
    p0 = _Proc(workdir, "p0", SWEEP + _job(port, 2, 0, "--init-timeout", "120"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "waiting for 1 of 2" not in p0.err_path.read_text() and p0.p.poll() is None:
        time.sleep(0.1)
    procs = {"p0": p0, "p1": _Proc(workdir, "p1", SWEEP + _job(port, 2, 1, "--init-timeout", "120"))}
    # a third process with the id of one already in the running job: refused, the job goes on
    while time.monotonic() < deadline + 60 and not (workdir / "out" / "sweep.json").exists():
        time.sleep(0.1)
    procs["p1_dup"] = _Proc(workdir, "p1_dup", SWEEP + _job(port, 2, 1, "--init-timeout", "20"))

    def results(workdir, procs):
        return None if (workdir / "out" / "results.csv").exists() else "no results.csv after the job"
    return _finish(workdir, procs, {"p0": _expect(ok=True, check=_said("waiting for 1 of 2 processes")),
                                    "p1": _expect(ok=True), "p1_dup": _expect(("--process-id", "1"))},
                   240, results)


def _run_killed(victim: int):
    def run(workdir: Path):
        port = _free_port()
        procs = {f"p{i}": _Proc(workdir, f"p{i}", LONG + _job(port, 2, i)) for i in (0, 1)}
        shard = workdir / "out" / "shards" / f"results.{victim}.csv"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and procs[f"p{victim}"].p.poll() is None:
            if shard.exists() and shard.read_bytes().count(b"\n") >= 2:  # header + a row
                break
            time.sleep(0.02)
        if procs[f"p{victim}"].p.poll() is not None:
            return "misleading", f"process {victim} ended before it could be killed mid-run"
        procs[f"p{victim}"].p.send_signal(signal.SIGKILL)
        procs[f"p{victim}"].p.wait()
        survivor = 1 - victim
        del procs[f"p{victim}"]

        def flushed(workdir, procs):  # its share finished and marked (the marker follows its rows)
            import json

            marker = workdir / "out" / "shards" / f"done.{survivor}"
            mine = workdir / "out" / "shards" / f"results.{survivor}.csv"
            rows = mine.read_text().count("\n") - 1 if mine.exists() else 0
            if not marker.exists():
                return f"process {survivor} did not mark its share done ({rows} rows in its shard)"
            m = json.loads(marker.read_text())
            return None if m["units_run"] == m["units"] and rows >= 2 else \
                f"process {survivor} ran {m['units_run']} of {m['units']} units ({rows} rows)"
        return _finish(workdir, procs, {f"p{survivor}": _expect((f"process {victim}", "died", "jaxrecon sweep"))},
                       120, flushed)
    return run


CASES = [
    # -- one process, bad flags (fail before any work) ------------------------------------------
    _flag_case("process_id_negative", _job(29517, 2, -1), ("--process-id",)),
    _flag_case("process_id_not_integer", ("--coordinator", "localhost:29517", "--num-processes", "2",
                                          "--process-id", "one"), ("--process-id",)),
    _flag_case("process_id_float", ("--coordinator", "localhost:29517", "--num-processes", "2",
                                    "--process-id", "1.5"), ("--process-id",)),
    _flag_case("process_id_equal_to_num_processes", _job(29517, 2, 2), ("--process-id", "[0, 2)")),
    _flag_case("num_processes_zero", _job(29517, 0, 0), ("--num-processes",)),
    _flag_case("num_processes_negative", _job(29517, -3, 0), ("--num-processes",)),
    _flag_case("num_processes_not_integer", ("--coordinator", "localhost:29517", "--num-processes", "two",
                                             "--process-id", "0"), ("--num-processes",)),
    _flag_case("process_id_without_coordinator", ("--num-processes", "2", "--process-id", "1"),
               ("--coordinator", "missing")),
    _flag_case("coordinator_without_port", ("--coordinator", "localhost", "--num-processes", "2",
                                            "--process-id", "0"), ("--coordinator", "HOST:PORT")),
    _flag_case("coordinator_port_zero", ("--coordinator", "localhost:0", "--num-processes", "2",
                                         "--process-id", "0"), ("--coordinator", "1..65535")),
    _flag_case("coordinator_port_out_of_range", ("--coordinator", "localhost:70000", "--num-processes", "2",
                                                 "--process-id", "0"), ("--coordinator", "1..65535")),
    _flag_case("coordinator_port_not_a_number", ("--coordinator", "localhost:http", "--num-processes", "2",
                                                 "--process-id", "1"), ("--coordinator",)),
    _flag_case("coordinator_empty_host", ("--coordinator", ":29517", "--num-processes", "2", "--process-id", "0"),
               ("--coordinator",)),
    _flag_case("coordinator_host_with_space", ("--coordinator", "local host:29517", "--num-processes", "2",
                                               "--process-id", "0"), ("--coordinator",)),
    _flag_case("coordinator_unresolvable_host", ("--coordinator", "no-such-host.invalid:29517", "--num-processes",
                                                 "2", "--process-id", "0"), ("--coordinator", "no-such-host.invalid")),
    _flag_case("coordinator_unresolvable_host_peer", ("--coordinator", "no-such-host.invalid:29517",
                                                      "--num-processes", "2", "--process-id", "1"),
               ("--coordinator", "no-such-host.invalid")),
    _flag_case("coordinator_not_this_machine", ("--coordinator", "192.0.2.1:29517", "--num-processes", "2",
                                                "--process-id", "0"), ("--coordinator", "192.0.2.1")),
    _flag_case("coordinator_unreachable_peer", ("--coordinator", "192.0.2.1:29517", "--num-processes", "2",
                                                "--process-id", "1", "--init-timeout", "3"),
               ("--init-timeout", "192.0.2.1:29517")),
    _flag_case("init_timeout_zero", _job(29517, 2, 0, "--init-timeout", "0"), ("--init-timeout",)),
    _flag_case("init_timeout_negative", _job(29517, 2, 0, "--init-timeout", "-5"), ("--init-timeout",)),
    _flag_case("init_timeout_nan", _job(29517, 2, 0, "--init-timeout", "nan"), ("--init-timeout",)),
    _flag_case("init_timeout_not_a_number", _job(29517, 2, 0, "--init-timeout", "soon"), ("--init-timeout",)),
    _flag_case("init_timeout_huge", _job(29517, 2, 0, "--init-timeout", "1e12"), ("--init-timeout",)),
    _flag_case("coordinator_bind_with_port", _job(29517, 2, 0, "--coordinator-bind", "0.0.0.0:29517"),
               ("--coordinator-bind",)),
    _flag_case("coordinator_bind_not_this_machine", _job(29517, 2, 0, "--coordinator-bind", "192.0.2.1"),
               ("--coordinator-bind", "192.0.2.1")),
    _flag_case("reconstruct_process_id_too_large", _job(29517, 2, 5), ("--process-id",), base=RECON),
    # -- several local processes with a fault ---------------------------------------------------
    Case("port_taken", AREA, run=_run_taken_port(False), timeout=5 + SLACK),
    Case("port_taken_on_every_interface", AREA, run=_run_taken_port(True), timeout=5 + SLACK),
    Case("peer_never_started", AREA, run=_run_missing([0], 2, {0: ("process 1", "--init-timeout")})),
    Case("two_peers_never_started", AREA, run=_run_missing([0], 3, {0: ("processes 1, 2", "--init-timeout")})),
    Case("coordinator_never_started", AREA, run=_run_missing([1], 2, {1: ("--init-timeout", "--coordinator")})),
    Case("one_of_three_never_started", AREA,
         run=_run_missing([0, 2], 3, {0: ("process 1", "--init-timeout"), 2: ("process 1", "--init-timeout")})),
    Case("reconstruct_peer_never_started", AREA,
         run=_run_missing([0], 2, {0: ("process 1", "--init-timeout")}, command_=RECON)),
    Case("duplicate_process_id", AREA, run=_run_duplicate([0, 1, 1], 3, 1)),
    Case("duplicate_process_id_zero", AREA, run=_run_duplicate([0, 0], 2, 0)),
    Case("other_num_processes", AREA, run=_run_other_k),
    Case("other_arguments", AREA, run=_run_other_arguments),
    Case("coordinator_listens_on_loopback", AREA, run=_run_loopback),
    Case("sigint_while_waiting", AREA, run=_run_sigint_while_waiting),
    Case("late_peer_and_late_duplicate", AREA, run=_run_late_peer),
    Case("killed_peer", AREA, run=_run_killed(1)),
    Case("killed_process_0", AREA, run=_run_killed(0)),
]
