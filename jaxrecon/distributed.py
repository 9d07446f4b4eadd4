"""Many processes, one job: JAX's multi-controller runtime (``jax.distributed``) behind a few flags.

A job of ``K`` processes (one per GPU on a cluster, or ``K`` processes on one machine) is started
by the cluster's launcher (``srun``, ``mpirun``) or by hand. Each process calls
:func:`initialize` once, before any JAX computation:

* explicit flags ``--coordinator HOST:PORT --num-processes K --process-id I`` (all three);
* otherwise, under SLURM (``srun``) or Open MPI (``mpirun``) with more than one task, JAX's own
  cluster detection finds the coordinator, ``K`` and ``I`` (and, on GPUs, gives each process the
  GPU of its local rank) and ``jax.distributed.initialize`` joins them;
* otherwise one process, exactly as without this module.

A job launched by hand fails in seconds with one line, never natively:

* process 0 binds ``--coordinator`` itself first, on that address only (loopback for
  ``localhost``; ``--coordinator-bind`` for another, e.g. ``0.0.0.0``): a taken port, or an
  address not of this machine, is one line before anything starts;
* it hands the socket to the job's coordinator, a small process of its own
  (:mod:`jaxrecon.coordinator`) that every process greets first: while some are missing each says
  ``waiting for N of K processes (timeout T s)``; after ``--init-timeout`` seconds (default
  :data:`DEFAULT_INIT_TIMEOUT`) every process exits with one line naming the missing ids; a
  ``--process-id`` given twice ends the job at once, one line each;
* then JAX's coordination service runs in that coordinator process, *recoverable*: a process that
  dies does not end the others (JAX's own client would abort them natively), and the coordinator
  tells the survivors. A sweep's survivor finishes its share, its rows flushed, then exits with
  one line naming the dead process and the command to resume (:class:`JobError`,
  :func:`gone_processes`, :func:`peer_lost_error`; :func:`barrier` passes over a process gone).

On CPUs the cross-process collectives are gloo's (``jax_cpu_collectives_implementation``), set
before initialising; on GPUs they are NCCL's. A program whose arrays span processes (a mesh
over processes, ``--shards``) cannot survive a dead process: its collectives fail, and the
survivor stops with the same one line (:func:`_excepthook`).

:func:`mesh_devices` picks the devices of a mesh so that every process contributes the same
number of its local devices (a process outside a mesh could not run the mesh's programs).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import hashlib
import ipaddress
import math
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import numpy as np

#: Environment variables of a multi-process launch that JAX's cluster detection reads, with the
#: variable holding the number of processes.
_CLUSTER_ENVS = (
    ("SLURM", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID"), "SLURM_NTASKS"),
    ("Open MPI", ("OMPI_MCA_orte_hnp_uri", "OMPI_COMM_WORLD_RANK"), "OMPI_COMM_WORLD_SIZE"),
)
#: Seconds every process waits for the others to start (``--init-timeout``).
DEFAULT_INIT_TIMEOUT = 60.0
MAX_INIT_TIMEOUT = 86400.0
#: Seconds without a heartbeat after which JAX's service counts a process dead (recoverable: it
#: is not propagated; the coordinator's connection tells the others first).
HEARTBEAT_SECONDS = 100
#: Seconds between two "waiting for N of K processes" lines.
_SAY_EVERY = 10.0


def _grace(timeout: float) -> float:
    """Seconds a process waits for the coordinator's first answer beyond the init timeout (the
    coordinator process may still be starting; once it answered, its own timeout, naming the
    missing processes, ends the wait): the timeout itself, within [3, 10]."""
    return min(10.0, max(3.0, timeout))


class ProcessFlags(NamedTuple):
    """Where a process stands in its job (``None`` everywhere: detect or run alone)."""

    coordinator: Optional[str] = None  # "HOST:PORT" of process 0's coordination service
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    init_timeout: Optional[float] = None  # seconds to wait for every process (default DEFAULT_INIT_TIMEOUT)
    coordinator_bind: Optional[str] = None  # where process 0 listens (default: the --coordinator host)

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in self[:3])


class JobError(ConnectionError):
    """A job of several processes failed at run time (a process never came, or one is gone): one
    line (the CLI prints it and exits 1)."""

    def __init__(self, message: str):
        super().__init__(errno.ECONNABORTED, message)

    def __str__(self) -> str:
        return self.strerror


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    """The process flags (a group of ``parser``)."""
    g = parser.add_argument_group(
        "processes", "run as one of K processes (JAX's multi-controller runtime); under srun or mpirun "
                     "with several tasks they are detected, so these flags are for launching by hand")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator (every process gives the same); process 0 "
                        "listens on that address only (loopback for localhost)")
    g.add_argument("--num-processes", type=int, default=None, metavar="K", help="number of processes in the job")
    g.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, in [0, K)")
    g.add_argument("--init-timeout", type=float, default=None, metavar="SECONDS",
                   help=f"seconds every process waits for the others to start (default {DEFAULT_INIT_TIMEOUT:g})")
    g.add_argument("--coordinator-bind", default=None, metavar="ADDRESS",
                   help="where process 0 listens instead of the --coordinator host, e.g. 0.0.0.0 (every "
                        "interface) for a job across machines whose host name resolves to a loopback address")


def flags_from_args(args) -> ProcessFlags:
    return ProcessFlags(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                        getattr(args, "process_id", None), getattr(args, "init_timeout", None),
                        getattr(args, "coordinator_bind", None))


def split_address(text) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` or ``[IPv6]:PORT``; a one-line ``ValueError`` naming
    ``--coordinator`` otherwise."""
    text = str(text)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536
            or any(c.isspace() or c in "/[]@" for c in host) or host.startswith("-")):
        raise ValueError(f"--coordinator: must be HOST:PORT with a port in 1..65535 (e.g. localhost:29500), "
                         f"got {text!r}")
    return host, int(port)


def _bind_host(text) -> str:
    """The ``--coordinator-bind`` address (brackets of an IPv6 address removed)."""
    host = str(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not host or ":" in host or any(c.isspace() or c in "/[]@" for c in host) or host.startswith("-"):
        raise ValueError(f"--coordinator-bind: must be an address or host name of this machine without the "
                         f"port (the port is --coordinator's), e.g. 0.0.0.0; got {text!r}")
    return host


def check_flags(flags: ProcessFlags) -> ProcessFlags:
    """One-line ``ValueError`` naming the flag for an incomplete or impossible set of flags."""
    t = flags.init_timeout
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)
                          or not 0 < t <= MAX_INIT_TIMEOUT):
        raise ValueError(f"--init-timeout: must be a number of seconds in (0, {MAX_INIT_TIMEOUT:g}], got {t!r}")
    if flags.coordinator_bind is not None:
        _bind_host(flags.coordinator_bind)
    if not flags.explicit:
        return flags
    for name, v in (("--coordinator", flags.coordinator), ("--num-processes", flags.num_processes),
                    ("--process-id", flags.process_id)):
        if v is None:
            raise ValueError(f"{name}: missing; launching by hand needs --coordinator, --num-processes "
                             f"and --process-id together")
    k, i = flags.num_processes, flags.process_id
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"--num-processes: must be a positive integer, got {k!r}")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k:
        raise ValueError(f"--process-id: must be in [0, {k}) for --num-processes {k}, got {i!r}")
    split_address(flags.coordinator)
    return flags


def detected_cluster(environ=None) -> Optional[tuple[str, int]]:
    """``(name, K)`` of a SLURM or Open MPI launch with ``K > 1`` tasks in ``environ``, else ``None``."""
    environ = os.environ if environ is None else environ
    for name, needed, count in _CLUSTER_ENVS:
        if all(v in environ for v in needed) and count in environ:
            try:
                k = int(environ[count])
            except ValueError:
                continue
            if k > 1:
                return name, k
    return None


def is_initialized() -> bool:
    from jax._src import distributed as _dist  # jax.distributed has no public query

    return _dist.global_state.client is not None


def initialize(flags: ProcessFlags = ProcessFlags(), timeout: Optional[float] = None, log=None) -> bool:
    """Join the job described by ``flags`` (or detected): see the module docstring.

    Returns whether this is a multi-process run. Call before any JAX computation; a second call
    (e.g. a library user who initialised already) is a no-op. ``timeout``: seconds to wait for all
    processes to connect (default ``flags.init_timeout``, else :data:`DEFAULT_INIT_TIMEOUT`).
    Failures are one line: ``ValueError`` for a flag (a taken port, a ``--process-id`` given
    twice), :class:`JobError` for a process that never came."""
    flags = check_flags(flags)
    if is_initialized():
        return jax.process_count() > 1
    timeout = float(timeout if timeout is not None else flags.init_timeout or DEFAULT_INIT_TIMEOUT)
    cluster = None if flags.explicit else detected_cluster()
    if not flags.explicit and cluster is None:
        return False
    if flags.explicit and flags.num_processes == 1:
        return False
    # gloo carries the cross-process collectives of CPU devices; GPUs ignore this option
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if flags.explicit:
        _join(flags, timeout)
    else:
        bind = None
        if flags.coordinator_bind is not None:
            bind = _bind_host(flags.coordinator_bind)
        jax.distributed.initialize(initialization_timeout=math.ceil(timeout),
                                   coordinator_bind_address=None if bind is None else _grpc_address(bind, None))
    if log:
        how = f"detected {cluster[0]}" if cluster else f"coordinator {flags.coordinator}"
        log(f"process {jax.process_index()} of {jax.process_count()} ({how}); "
            f"{jax.local_device_count()} local of {jax.device_count()} {jax.devices()[0].platform} devices")
    return jax.process_count() > 1


# -- a job launched by hand: the handshake with the coordinator process --------------------------
def _say(text: str) -> None:
    print(f"jaxrecon: {text}", file=sys.stderr, flush=True)


def _grpc_address(host: str, port: Optional[int]) -> str:
    """``HOST:PORT`` for gRPC (IPv6 in brackets); ``port`` None: the port of the detected
    coordinator (JAX's default bind address uses the coordinator's port)."""
    if port is None:
        from jax._src import clusters

        addr = clusters.ClusterEnv.auto_detect_unset_distributed_params(None, None, None, None)[0]
        port = int(addr.rsplit(":", 1)[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resume_command() -> str:
    """This process's command line (``jaxrecon ARGS``): rerunning it on every process resumes."""
    return "jaxrecon " + shlex.join(sys.argv[1:])


#: Flags that may differ between the processes of one job (left out of :func:`_job_key`).
_PER_PROCESS = {"--process-id": True, "--init-timeout": True, "--coordinator": True, "--coordinator-bind": True,
                "--quiet": False}  # flag: takes a value


def _job_key() -> str:
    """A key of this process's command line without the flags that may differ between the
    processes of a job (:data:`_PER_PROCESS`): the processes of one job give the same command
    apart from those, so a process of another job (or another grid) is told so."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in _PER_PROCESS:
            skip = _PER_PROCESS[name] and "=" not in a
            continue
        args.append(a)
    return hashlib.sha256("\0".join(args).encode()).hexdigest()[:16]


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def _listen(flags: ProcessFlags, host: str, port: int, k: int, key: str) -> tuple[socket.socket, str]:
    """Process 0: the coordinator's listening socket on the ``--coordinator`` address (or
    ``--coordinator-bind``) and that address as gRPC takes it; one-line ``ValueError`` when the port is
    taken, the address is not this machine's or the name does not resolve."""
    flag = "--coordinator-bind" if flags.coordinator_bind is not None else "--coordinator"
    where = _bind_host(flags.coordinator_bind) if flags.coordinator_bind is not None else host
    try:
        infos = socket.getaddrinfo(where, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"{flag}: cannot resolve {where!r} on this machine (process 0 runs the coordinator): "
                         f"{e.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first (localhost: 127.0.0.1)
    family, _, _, _, sockaddr = infos[0]
    ip = sockaddr[0]
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and ipaddress.ip_address(ip.split("%")[0]).is_unspecified:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::": IPv4 too
    try:
        s.bind(sockaddr)
        s.listen(max(128, k))
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            dup = _probe_duplicate(ip, port, k, key)
            if dup:
                raise ValueError(dup) from None
            raise ValueError(f"--coordinator: port {port} is already in use on {where} ({ip}) by another program "
                             f"or job; give another port in --coordinator (the same to every process)") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ValueError(f"{flag}: {where} ({ip}) is not an address of this machine; process 0 runs the "
                             f"coordinator, so --coordinator names process 0's machine (or give "
                             f"--coordinator-bind with an address of this machine)") from None
        if e.errno == errno.EACCES:
            raise ValueError(f"--coordinator: port {port} needs privileges on this machine; use a port above "
                             f"1023") from None
        raise ValueError(f"{flag}: cannot listen on {where} ({ip}) port {port}: {e.strerror}") from None
    if flags.coordinator_bind is None and host != "localhost" and _is_loopback(ip) and \
            not _is_loopback(host.strip("[]")):
        _say(f"note: --coordinator {host} is {ip} here, a loopback address: processes on other machines "
             f"cannot reach it (give --coordinator-bind 0.0.0.0 for a job across machines)")
    return s, _grpc_address(ip, port)


def _probe_duplicate(ip: str, port: int, k: int, key: str) -> Optional[str]:
    """Process 0 could not bind the port: if a coordinator of the same job holds it, another
    process 0 was started (its coordinator then ends the job and answers the duplicate's line)."""
    if ip in ("0.0.0.0", "::"):
        ip = "127.0.0.1" if ip == "0.0.0.0" else "::1"
    try:
        s = socket.create_connection((ip, port), timeout=2.0)
    except OSError:
        return None
    with s:
        try:
            s.sendall(_hello(k, 0, key, probe=True).encode())
            s.settimeout(8.0)  # the coordinator process may still be starting
            data = b""
            while b"\n" not in data and len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
    line = data.split(b"\n", 1)[0].decode(errors="replace")
    if line.startswith("error input --process-id:"):
        return line.split(" ", 2)[2]
    if _is_http2(data):
        return (f"--process-id: a job already runs at port {port} (its coordinator holds the port): was "
                f"--process-id 0 given to two processes? (otherwise give this job another port in --coordinator)")
    return None


def _hello(k: int, i: int, key: str, probe: bool = False) -> str:
    from .coordinator import PROTOCOL

    return (f"hello {PROTOCOL} k={k} id={i} key={key} host={socket.gethostname() or '?'} pid={os.getpid()}"
            + (" probe=1" if probe else "") + "\n")


def _private_api_ok() -> bool:
    """Whether this JAX exposes what running the service outside process 0 needs (the client
    and service constructors and ``jax._src.distributed.global_state``)."""
    try:
        from jax._src import distributed as _dist
        from jax._src.lib import _jax

        st = _dist.global_state
        return (callable(getattr(_jax, "get_distributed_runtime_client", None))
                and callable(getattr(_jax, "get_distributed_runtime_service", None))
                and hasattr(st, "initialize_preemption_sync_manager") and hasattr(st, "client"))
    except Exception:  # noqa: BLE001
        return False


def _spawn_coordinator(listener: socket.socket, k: int, key: str, address: str, bind: str, timeout: float,
                       service: bool) -> subprocess.Popen:
    """Start :mod:`jaxrecon.coordinator` with the listening socket (its own session: a signal to
    the job's process group does not reach it; it ends when every process has disconnected)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    fd = listener.fileno()
    cmd = [sys.executable, "-m", "jaxrecon.coordinator", "--fd", str(fd), "--num-processes", str(k), "--key", key,
           "--address", address, "--bind", bind, "--timeout", repr(float(timeout)),
           "--heartbeat", str(HEARTBEAT_SECONDS)] + ([] if service else ["--no-service"])
    return subprocess.Popen(cmd, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=root, env=env)


def _helper_ended(helper: subprocess.Popen) -> Exception:
    """The error of a coordinator process that ended before the job started: the line it printed
    (its verdict, e.g. a duplicate id seen before this process said hello), else its status."""
    try:
        said = helper.stdout.read().decode(errors="replace").strip().splitlines() if helper.stdout else []
    except (OSError, ValueError):
        said = []
    if said and said[-1].startswith("error "):
        _, kind, message = (said[-1].split(" ", 2) + ["", ""])[:3]
        return (ValueError if kind == "input" else JobError)(message)
    return JobError(f"--coordinator: the job's coordinator process (started by process 0) exited with status "
                    f"{helper.returncode} before the job started")


def _connect(host: str, port: int, deadline: float, timeout: float, coordinator: str,
             helper: Optional[subprocess.Popen] = None) -> socket.socket:
    """A connection to the coordinator, retried until ``deadline`` (it may not have started yet)."""
    from .signals import Interrupted, stop_requested

    said = False
    while True:
        if stop_requested():
            raise Interrupted("interrupted while waiting for the coordinator (process 0); nothing started")
        if helper is not None and helper.poll() is not None:
            raise _helper_ended(helper)
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobError(f"--init-timeout: no coordinator answered at {coordinator} within {timeout:g} s "
                           f"(process 0 not started, or --coordinator does not name its machine and port); start "
                           f"process 0 with the same --coordinator, or give a longer --init-timeout")
        try:
            return socket.create_connection((host, port), timeout=min(5.0, max(0.1, left)))
        except socket.gaierror as e:
            raise ValueError(f"--coordinator: cannot resolve host {host!r}: {e.strerror}") from None
        except OSError:
            if not said:
                _say(f"waiting for process 0, the coordinator at {coordinator} (timeout {timeout:g} s)")
                said = True
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _is_http2(data: bytes) -> bool:
    """Whether ``data`` starts with an HTTP/2 SETTINGS frame: a gRPC server (JAX's coordination
    service of a job that has started) answered, not a coordinator in its handshake."""
    return len(data) >= 9 and data[3] == 4 and data[5:9] == b"\0\0\0\0"


def _await_go(sock: socket.socket, k: int, i: int, deadline: float, timeout: float, coordinator: str,
              helper: Optional[subprocess.Popen]) -> bytes:
    """Read the coordinator's lines until ``go`` (returns what came after it); ``waiting N`` is
    said on stderr, ``error KIND MESSAGE`` raised (``ValueError`` for input, else :class:`JobError`)."""
    from .signals import Interrupted, stop_requested

    sock.settimeout(0.25)
    buf, last_said, last_n = b"", -math.inf, None
    answered = False  # once the coordinator answered, its own timeout (naming the missing) ends the wait
    while True:
        if stop_requested():
            raise Interrupted("interrupted while waiting for the other processes of the job; nothing started")
        if time.monotonic() > deadline + _grace(timeout) + (timeout if answered else 0.0):
            raise JobError(f"--init-timeout: no answer from the coordinator at {coordinator} within {timeout:g} s "
                           f"(the port may belong to another program; give another port in --coordinator, the "
                           f"same to every process)")
        if helper is not None and helper.poll() is not None and not buf:
            try:
                pending = sock.recv(65536, socket.MSG_DONTWAIT)
            except OSError:
                pending = b""
            if not pending:
                raise _helper_ended(helper)
            buf += pending
        else:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                raise JobError(f"--coordinator: the coordinator at {coordinator} closed the connection before the "
                               f"job started (process 0 ended, or the port belongs to another program)")
            buf += data
        if not answered and _is_http2(buf):
            raise ValueError(f"--process-id: the job at {coordinator} already runs with all its processes, so this "
                             f"one (--process-id {i}) is not part of it: was --process-id {i} given to two "
                             f"processes? (otherwise --coordinator names another job's port)")
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace").strip()
            if line == "go":
                return buf
            if line.startswith("error "):
                _, kind, message = (line.split(" ", 2) + ["", ""])[:3]
                raise (ValueError if kind == "input" else JobError)(message)
            if line.startswith("waiting "):
                answered = True
                try:
                    n = int(line.split()[1])
                except (IndexError, ValueError):
                    continue
                now = time.monotonic()
                if last_n is None or (n != last_n and now - last_said >= _SAY_EVERY):
                    _say(f"waiting for {n} of {k} processes (timeout {timeout:g} s)")
                    last_said, last_n = now, n


class _Job:
    """This process's connection to the coordinator once the job has started: a reader thread
    records the processes gone and the barriers passed."""

    def __init__(self, sock: socket.socket, k: int, i: int, coordinator: str, buf: bytes):
        self.sock, self.k, self.i, self.coordinator = sock, k, i, coordinator
        self.gone: dict = {}
        self.passed: set = set()
        self.lost = False  # the coordinator process itself ended
        self.cond = threading.Condition()
        self._buf = buf
        sock.settimeout(None)
        threading.Thread(target=self._read, name="jaxrecon-job", daemon=True).start()

    def send(self, text: str) -> None:
        try:
            self.sock.sendall((text + "\n").encode())
        except OSError:
            pass

    def bye(self) -> None:
        self.send("bye")

    def _read(self) -> None:
        buf = self._buf
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._line(raw.decode(errors="replace").strip())
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self.cond:
                    self.lost = True
                    self.cond.notify_all()
                return
            buf += data

    def _line(self, line: str) -> None:
        words = line.split(maxsplit=1)
        with self.cond:
            if words and words[0] == "gone" and len(words) == 2:
                j, _, how = words[1].partition(" ")
                try:
                    self.gone[int(j)] = how or "died"
                except ValueError:
                    return
                if how == "died" and _SPANNING:
                    _say(f"process {j} of {self.k} died (its connection to the coordinator closed); this "
                         f"process's arrays span the processes, so it stops unless it finishes within "
                         f"{SPANNING_GRACE:g} s")
                    threading.Thread(target=_stop_spanning, name="jaxrecon-job-stop", daemon=True).start()
                elif how == "died":
                    _say(f"process {j} of {self.k} died (its connection to the coordinator closed); this "
                         f"process goes on with its own work")
            elif words and words[0] == "pass" and len(words) == 2:
                self.passed.add(words[1])
            self.cond.notify_all()

    def barrier(self, name: str) -> None:
        self.send(f"barrier {name}")
        with self.cond:
            self.cond.wait_for(lambda: name in self.passed or self.lost)
            if name not in self.passed:
                raise JobError(f"the job's coordinator process ended (process 0's machine lost?) before every "
                               f"process reached {name!r}; to resume, run the same command on every process again "
                               f"(this one: {resume_command()})")


_JOB: Optional[_Job] = None
#: Whether this process runs programs over a mesh spanning the processes (:func:`mesh_devices`):
#: then a dead peer leaves its collectives waiting forever.
_SPANNING = False
#: Seconds such a process still has to finish after a peer died (its last writes), before it stops.
SPANNING_GRACE = 10.0


def _spans() -> None:
    global _SPANNING
    _SPANNING = True


def _stop_spanning() -> None:
    """A peer died while this process's arrays span the processes: its collectives would wait
    forever. Unless the run ends first, stop with the one line (nothing of the run is saved)."""
    time.sleep(SPANNING_GRACE)
    line = peer_lost_error(gone_processes(), "this run ended (its arrays span the processes, so it cannot go on "
                                             "without them)", "nothing of this run is saved")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a stream in use by the stuck main thread)
            pass
    try:
        os.write(2, f"jaxrecon: error: {line}\n".encode())
    finally:
        os._exit(1)


def _join(flags: ProcessFlags, timeout: float) -> None:
    """Join a job launched by hand: handshake with the coordinator process (process 0 starts it),
    then connect JAX's client (see the module docstring)."""
    global _JOB
    host, port = split_address(flags.coordinator)
    k, i = flags.num_processes, flags.process_id
    deadline = time.monotonic() + timeout
    key = _job_key()
    private = _private_api_ok()
    helper, bind, connect_to = None, None, host
    if i == 0:
        listener, bind = _listen(flags, host, port, k, key)
        try:
            helper = _spawn_coordinator(listener, k, key, flags.coordinator, bind, timeout, service=private)
        finally:
            listener.close()
        ip = bind.rsplit(":", 1)[0].strip("[]")
        connect_to = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(ip, ip)
    sock = _connect(connect_to, port, deadline, timeout, flags.coordinator, helper)
    try:
        sock.sendall(_hello(k, i, key).encode())
        rest = _await_go(sock, k, i, deadline, timeout, flags.coordinator, helper)
    except BaseException:
        sock.close()
        raise
    _JOB = _Job(sock, k, i, flags.coordinator, rest)
    atexit.register(_JOB.bye)  # after JAX's own exit handler was registered: runs before it
    sys.excepthook = _excepthook
    left = max(10.0, deadline - time.monotonic())
    if private:
        _connect_client(flags.coordinator, k, i, left)
    else:  # pragma: no cover (a JAX without the private API): process 0 runs the service itself
        jax.config.update("jax_enable_recoverability", True)
        jax.distributed.initialize(flags.coordinator, k, i, initialization_timeout=math.ceil(left),
                                   heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
                                   coordinator_bind_address=bind if i == 0 else None)


def _connect_client(address: str, k: int, i: int, timeout: float) -> None:
    """``jax.distributed.initialize`` without starting a service in process 0 (the coordinator
    process runs it): JAX's client, connected, and JAX's global state set as initialize sets it."""
    from jax._src import distributed as _dist
    from jax._src import xla_bridge
    from jax._src.lib import _jax

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("jax.distributed.initialize() must be called before any JAX calls that might "
                           "initialise the XLA backend")
    st = _dist.global_state
    if st.client is not None:
        raise RuntimeError("distributed.initialize should only be called once.")
    client = _jax.get_distributed_runtime_client(address, i, init_timeout=math.ceil(timeout), use_compression=True,
                                                 heartbeat_timeout=HEARTBEAT_SECONDS)
    client.connect()
    st.coordinator_address, st.process_id, st.num_processes, st.client = address, i, k, client
    st.initialize_preemption_sync_manager()


def gone_processes() -> dict:
    """``{process id: "died" | "exited"}`` of the processes of this job (launched by hand) whose
    connection to the coordinator has closed; empty otherwise."""
    if _JOB is None:
        return {}
    with _JOB.cond:
        return dict(_JOB.gone)


def peer_lost_error(gone: dict, before: str, saved: str = "") -> JobError:
    """The one line of a survivor: which processes ended (``gone``: id -> how) before what, what
    this process saved, and the command that resumes."""
    ids = sorted(gone)
    hows = {gone[j] for j in ids}
    verb = "died (killed, or crashed: see its output)" if hows == {"died"} else \
        "exited (see its output)" if hows == {"exited"} else "ended (see their output)"
    who = ("process " if len(ids) == 1 else "processes ") + ", ".join(map(str, ids))
    return JobError(f"{who} of {process_count()} {verb} before {before}" + (f"; {saved}" if saved else "")
                    + f"; to resume, run the same command on every process again (this one: {resume_command()})")


def barrier(name: str) -> None:
    """Wait until every process of the job reached ``barrier(name)``. A process launched by hand
    that has ended counts as arrived (it can no longer be waited for, nor read what the barrier
    protects): survivors go on. Without a job, nothing; a detected cluster: JAX's own barrier."""
    if _JOB is not None:
        _JOB.barrier(name)
    elif process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _excepthook(kind, value, tb) -> None:
    """An uncaught error after a peer of the job died (a collective over a mesh spanning the
    processes fails) is that peer's death: one line, exit 1, no traceback."""
    gone = gone_processes()
    if gone and not issubclass(kind, KeyboardInterrupt):
        print(f"jaxrecon: error: {peer_lost_error(gone, 'this process finished')}", file=sys.stderr, flush=True)
        return
    sys.__excepthook__(kind, value, tb)


def process_index() -> int:
    return jax.process_index() if is_initialized() else 0


def process_count() -> int:
    return jax.process_count() if is_initialized() else 1


def mesh_devices(count: int, name: str = "shards") -> np.ndarray:
    """``count`` devices for a one-axis mesh: ``jax.devices()[:count]`` in one process; with ``K``
    processes, the first ``count / K`` local devices of every process, in process order (so each
    process holds a contiguous range of the mesh; ``count`` must be a multiple of ``K``)."""
    k = process_count()
    if k == 1:
        return np.asarray(jax.devices()[:count])
    if count % k:
        raise ValueError(f"{name}: {count} devices cannot be split evenly over {k} processes; "
                         f"use a multiple of {k}")
    per = count // k
    gone = gone_processes()
    if gone:  # its collectives would wait for the dead forever
        raise peer_lost_error(gone, "this run's mesh over the processes was built")
    _spans()
    by_process: dict = {}
    for dev in jax.devices():
        by_process.setdefault(dev.process_index, []).append(dev)
    if any(len(by_process.get(i, [])) < per for i in range(k)):
        raise ValueError(f"{name}: {count} devices need {per} per process, but a process has fewer "
                         f"({jax.local_device_count()} here)")
    return np.asarray([d for i in range(k) for d in by_process[i][:per]])


def host_local(tree):
    """``tree`` with every array that spans other processes' devices gathered into a local NumPy
    array (the same on every process); other leaves unchanged. Use on small results (``theta``)
    that host code reads."""

    def gather(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return a

    return jax.tree_util.tree_map(gather, tree)
