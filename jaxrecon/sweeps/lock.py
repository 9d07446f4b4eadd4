"""One writer per sweep directory: an OS file lock on ``OUT/.lock`` held for the whole run.

The lock is ``fcntl.flock`` (exclusive, non-blocking) on an open file, so the OS releases it when
the holder exits, however it exits; no stale lock outlives a killed sweep (its file may remain: a
later sweep takes it). While held, the file records the holder (pid, host, start time) for the
error a second writer gets; a sweep that ends (finished, refused or stopped) removes it. Readers
(``jaxrecon plot``) do not take the lock.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['hostname']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st, here = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)


@contextlib.contextmanager
def hold(directory):
    """Hold ``directory``'s sweep lock for the ``with`` block; ``ValueError`` naming the holder if
    another process (or another open of the lock in this one) holds it.

    The lock file is removed when the block ends, however it ends (a refused or finished sweep
    leaves no ``.lock``); it is removed while still locked, and a process that locked a file
    removed under it tries again, so two writers never hold two different files."""
    path = Path(directory) / LOCK_NAME
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValueError(f"out: {str(directory)!r} is being written by another sweep ({_holder(path)}); "
                             f"wait for it to finish or use another --out") from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder before us removed this file as we opened it: open the new one
    else:
        raise ValueError(f"out: cannot lock {str(path)!r}; use another --out")
    try:
        info = {"pid": os.getpid(), "hostname": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as e:  # a full disk: name the file
            raise OSError(e.errno, e.strerror, str(path)) from e
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still locked: a writer that opened it before sees it gone and retries
        os.close(fd)  # releases the lock
