"""The coordinator of a job of K processes launched by hand: a small process that process 0 starts.

Process 0 binds the ``--coordinator`` address (so a taken port is one line before anything
starts) and hands the listening socket to this process (``python -m jaxrecon.coordinator``),
which then:

1. **Handshake.** Every process, process 0 included, connects and says ``hello`` (its id, K, a
   key of its command line, its host and pid). While some are missing, the connected ones are
   told how many (``waiting N``) and print it. A second process with an id already taken ends
   the job (every process prints one line naming ``--process-id`` and the id; a second process
   0, which cannot bind the port, says a ``probe`` hello); a process of another K or another
   command is refused (it alone prints why). Within the init timeout all K must be there, else
   every process is told which ids never came and exits with one line; process 0 leaving ends
   the handshake at once (the port is freed).
2. **JAX's coordination service** is started on the same address, *recoverable* (a process that
   dies does not end the others), and every process is told ``go`` (each then connects its JAX
   client, :func:`jaxrecon.distributed.initialize`).
3. **Watch.** A process whose connection closes has ended: the others are told (``gone I died``,
   or ``exited`` after its ``bye``), so a survivor finishes its own work and stops with one line
   instead of waiting for a dead peer or being aborted natively. Barriers (``barrier NAME``) pass
   (``pass NAME``) when every process arrived or has gone (a gone process can neither arrive nor
   read what the barrier protects).
4. It exits when every connection has closed.

The service lives here, not in process 0, because JAX's client ends its own process natively
(``LOG(FATAL)``) when its service goes away: a killed process 0 must not take the others with
it. This process ignores SIGINT and runs in its own session (a Ctrl-C or ``timeout`` aimed at the
job's process group stops the workers, which then disconnect, and this process follows).

Messages are text lines; an ``error KIND MESSAGE`` line (``KIND``: ``input`` for a wrong flag,
``job`` for a missing process) is the one line a process prints before exiting.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

#: The protocol's first words; a process of another version is refused.
PROTOCOL = "jaxrecon-job/1"
MAX_LINE = 1 << 16


class Peer:
    """One connection: its read buffer and, after its hello, who it is."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.id = None
        self.host = "?"
        self.pid = "?"
        self.bye = False

    def send(self, text: str) -> None:
        try:
            self.sock.sendall((text.replace("\n", " ") + "\n").encode())
        except OSError:  # gone: its end-of-file is seen by the loop
            pass

    def read(self):
        """The complete lines now available (a list), or ``None`` at end-of-file or garbage."""
        try:
            data = self.sock.recv(MAX_LINE)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            return None
        self.buf += data
        if b"\n" not in self.buf and len(self.buf) > MAX_LINE:
            return None
        *lines, self.buf = self.buf.split(b"\n")
        return [line.decode(errors="replace").strip() for line in lines]

    def who(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def parse_hello(line: str):
    """``{"k", "id", "key", "host", "pid"}`` of a hello line, or ``None``."""
    words = line.split()
    if len(words) < 2 or words[0] != "hello" or words[1] != PROTOCOL:
        return None
    fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    try:
        return {"k": int(fields["k"]), "id": int(fields["id"]), "key": fields.get("key", ""),
                "host": fields.get("host", "?"), "pid": fields.get("pid", "?"), "probe": fields.get("probe") == "1"}
    except (KeyError, ValueError):
        return None


def _ids(ids) -> str:
    ids = sorted(ids)
    return ("process " if len(ids) == 1 else "processes ") + ", ".join(map(str, ids))


def handshake(listener: socket.socket, k: int, key: str, address: str, timeout: float):
    """Wait for the K processes; returns ``({id: Peer}, None)``, or ``(None, line)`` when the job
    cannot start (every connected process was sent ``line``; process 0 also reads it from this
    process's output, in case it was not connected yet).

    A ``probe`` hello comes from a process 0 that could not bind the port: with this job's key it
    is a second process 0 (the one that bound the port started this coordinator), and ends the job."""
    deadline = time.monotonic() + timeout
    peers: list[Peer] = []
    by_id: dict = {}

    def end(line: str, to) -> tuple:
        for q in to:
            q.send(line)
        return None, line

    def drop(p: Peer) -> bool:
        """Forget a connection; ``False`` when it was process 0's (the job cannot start: the
        others are told, and the port is freed at once)."""
        peers.remove(p)
        p.close()
        if p.id is not None and by_id.get(p.id) is p:
            del by_id[p.id]
            if p.id == 0:
                return False
            tell_waiting()
        return True

    def tell_waiting() -> None:
        for q in by_id.values():
            q.send(f"waiting {k - len(by_id)}")

    while len(by_id) < k:
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(set(range(k)) - set(by_id))
            return end(f"error job --init-timeout: waited {timeout:g} s for {_ids(missing)} of {k}, which never "
                       f"reached the coordinator at {address}; start each with the same command and its "
                       f"--process-id (and the same --coordinator), or give a longer --init-timeout", peers)
        ready, _, _ = select.select([listener] + [p.sock for p in peers], [], [], min(left, 1.0))
        for s in ready:
            if s is listener:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                peers.append(Peer(conn))
                continue
            p = next(q for q in peers if q.sock is s)
            lines = p.read()
            if lines is None:
                if not drop(p):
                    return end(f"error job --coordinator: process 0 (which runs the coordinator at {address}) "
                               f"ended before the job started; start it again with the same command", peers)
                continue
            for line in lines:
                if p.id is not None:
                    continue  # nothing else is expected before "go"
                hello = parse_hello(line)
                if hello is None:
                    p.send(f"error input --coordinator: {address} is a jaxrecon coordinator of another version "
                           f"or this is not a jaxrecon process")
                    drop(p)
                    break
                p.host, p.pid = hello["host"], hello["pid"]
                if hello["k"] != k:
                    p.send(f"error input --num-processes: this process says {hello['k']}, but process 0 of the "
                           f"job at {address} says {k}; give every process the same --num-processes")
                    drop(p)
                    break
                if hello["key"] != key:
                    p.send(f"error input --coordinator: {address} runs another job (its process 0 was started "
                           f"with other arguments than this process); give each job its own port, and every "
                           f"process of a job the same command apart from --process-id")
                    drop(p)
                    break
                if not 0 <= hello["id"] < k:
                    p.send(f"error input --process-id: must be in [0, {k}), got {hello['id']}")
                    drop(p)
                    break
                first = by_id.get(hello["id"])
                if first is not None or hello["probe"]:
                    first_is = first.who() if first is not None else f"pid {os.getppid()}, which holds the port"
                    return end(f"error input --process-id: {hello['id']} was given to two processes "
                               f"({first_is} and {p.who()}); give each of the {k} processes of the job its "
                               f"own --process-id in [0, {k})", peers)
                p.id = hello["id"]
                by_id[p.id] = p
                if len(by_id) < k:
                    tell_waiting()
    for p in peers:  # connected without a hello: not part of the job
        if p.id is None:
            p.close()
    return by_id, None


def start_service(bind: str, k: int, heartbeat: int):
    """JAX's coordination service on ``bind``, recoverable (a dead task is not propagated)."""
    try:
        from jaxlib import _jax  # without importing jax: this process starts in about a second
    except ImportError:  # pragma: no cover (other layouts)
        from jax._src.lib import _jax
    return _jax.get_distributed_runtime_service(bind, k, heartbeat_timeout=heartbeat, recoverable=True)


def watch(by_id: dict, k: int) -> None:
    """Relay departures and run barriers until every connection has closed. A barrier passes when
    every process arrived at it or has gone (a gone process can neither arrive nor read what the
    barrier protects)."""
    live = dict(by_id)
    barriers: dict = {}
    departed: set = set()

    def settle() -> None:
        for name in [n for n, arrived in barriers.items() if len(arrived | departed) == k]:
            del barriers[name]
            for q in live.values():
                q.send(f"pass {name}")

    while live:
        ready, _, _ = select.select([p.sock for p in live.values()], [], [])
        for s in ready:
            p = next((q for q in live.values() if q.sock is s), None)
            if p is None:
                continue
            lines = p.read()
            if lines is None:
                del live[p.id]
                departed.add(p.id)
                p.close()
                for q in live.values():
                    q.send(f"gone {p.id} {'exited' if p.bye else 'died'}")
                settle()
                continue
            for line in lines:
                words = line.split(maxsplit=1)
                if words == ["bye"]:
                    p.bye = True
                elif len(words) == 2 and words[0] == "barrier":
                    barriers.setdefault(words[1], set()).add(p.id)
                    settle()


def serve(listener: socket.socket, k: int, key: str, address: str, bind: str, timeout: float,
          service: bool = True, heartbeat: int = 100) -> int:
    by_id, final = handshake(listener, k, key, address, timeout)
    listener.close()  # the port is JAX's now
    if by_id is None:
        print(final, flush=True)  # process 0 reads it if it could not hear it on its connection
        return 1
    svc = None
    if service:
        try:
            svc = start_service(bind, k, heartbeat)
        except Exception as e:  # noqa: BLE001 (any failure is reported to every process)
            for p in by_id.values():
                p.send(f"error job --coordinator: JAX's coordination service did not start on {bind}: "
                       f"{' '.join(str(e).split())[:300]}")
            return 1
    for p in by_id.values():
        p.send("go")
    watch(by_id, k)
    if svc is not None:  # every process has gone; shutting down must not keep this one alive
        threading.Thread(target=svc.shutdown, daemon=True).start()
        time.sleep(0.5)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxrecon.coordinator", description=__doc__.splitlines()[0])
    ap.add_argument("--fd", type=int, required=True, help="the listening socket process 0 bound")
    ap.add_argument("--num-processes", type=int, required=True)
    ap.add_argument("--key", required=True, help="key of the job's command line")
    ap.add_argument("--address", required=True, help="the --coordinator address, for messages")
    ap.add_argument("--bind", required=True, help="where JAX's coordination service listens (HOST:PORT)")
    ap.add_argument("--timeout", type=float, required=True, help="seconds to wait for every process")
    ap.add_argument("--no-service", action="store_true", help="process 0 starts JAX's service itself")
    ap.add_argument("--heartbeat", type=int, default=100)
    a = ap.parse_args(argv)
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    listener = socket.socket(fileno=a.fd)
    code = serve(listener, a.num_processes, a.key, a.address, a.bind, a.timeout, not a.no_service, a.heartbeat)
    sys.stdout.flush()
    os._exit(code)  # no interpreter teardown racing the service's threads


if __name__ == "__main__":
    main()
