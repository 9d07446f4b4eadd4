"""Ctrl-C and SIGTERM for long runs: the first asks the run to stop, the second quits at once.

Inside :func:`handle_signals` a SIGINT or SIGTERM never unwinds Python through a running XLA
compilation or computation (which could end in a native crash at exit): the first one is recorded
and one line is printed; host loops call :func:`stop_requested` between chunks (or sweep points),
stop there and save what they have. A second signal flushes the standard streams and ends the
process at once with ``128 + signum`` (130 for SIGINT, 143 for SIGTERM); the same signal repeated
within a second of the first is not a second one (GNU ``timeout`` delivers one SIGTERM twice: to the
command and to its process group).

Python runs its signal handlers only between bytecodes, which may be minutes away while XLA
compiles or runs a chunk. So the signals are also sent to a pipe (``signal.set_wakeup_fd``) that a
watcher thread reads; it reacts while the main thread waits inside XLA. The state of a request
lives in the installed handler, so :func:`stop_requested` needs no global variable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds within which a repeat of the first signal counts as the same one.
REPEAT_WINDOW = 1.0


class StopRequest:
    """The signal state of one :func:`handle_signals` block: ``signum`` is the first signal
    received (``None`` while none was)."""

    def __init__(self, what: str):
        self.what = what
        self.signum: Optional[int] = None
        self._since: float = 0.0  # time.monotonic() of the first signal
        self._lock = threading.Lock()

    @property
    def exit_code(self) -> Optional[int]:
        """``128 + signum`` (130 for SIGINT, 143 for SIGTERM), ``None`` while no signal came."""
        return None if self.signum is None else 128 + self.signum

    def on_signal(self, signum: int) -> None:
        """First signal: record it and say so; a later one: flush and exit now. The same signal
        again within :data:`REPEAT_WINDOW` seconds of the first is that one's copy (GNU ``timeout``
        signals the command and then its process group) and changes nothing."""
        with self._lock:
            first = self.signum is None
            if first:
                self.signum, self._since = signum, time.monotonic()
            elif signum == self.signum and time.monotonic() - self._since < REPEAT_WINDOW:
                return
        if first:
            name = signal.Signals(signum).name
            _say(f"\njaxrecon: {name}: stopping after the current {self.what}; Ctrl-C again to quit now\n")
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a stream in use by the interrupted code: its buffer is lost
                pass
        _say(f"jaxrecon: {signal.Signals(signum).name} again: quitting now\n")
        os._exit(128 + signum)

    def python_handler(self, signum, frame) -> None:
        """The Python-level handler (runs between bytecodes; the watcher thread usually came first)."""
        if self.signum is None:
            self.on_signal(signum)


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())  # not sys.stderr: the interrupted code may be writing to it
    except OSError:
        pass


def _watch(request: StopRequest, fd: int) -> None:
    """Read signal numbers from the wakeup pipe until it is closed."""
    seen = 0
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in SIGNALS:
                seen += 1
                # the first one may also reach python_handler; count it once
                if seen == 1 and request.signum == signum:
                    continue
                request.on_signal(signum)


@contextlib.contextmanager
def handle_signals(what: str = "chunk") -> Iterator[Optional[StopRequest]]:
    """Handle SIGINT and SIGTERM as described in the module docstring within the block; ``what``
    names the unit the run stops after (``"chunk"``, ``"grid point"``). Yields the
    :class:`StopRequest` (``None`` outside the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    request = StopRequest(what)
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = {s: signal.signal(s, request.python_handler) for s in SIGNALS}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(request, r), name="jaxrecon-signals", daemon=True)
    watcher.start()
    try:
        yield request
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(w)  # the watcher reads end-of-file and returns
        watcher.join(timeout=5)
        os.close(r)


def current_request() -> Optional[StopRequest]:
    """The :class:`StopRequest` of the innermost :func:`handle_signals` block, if any."""
    handler = signal.getsignal(signal.SIGINT)
    owner = getattr(handler, "__self__", None)
    return owner if isinstance(owner, StopRequest) else None


def stop_requested() -> bool:
    """Whether a SIGINT or SIGTERM asked the run to stop (inside :func:`handle_signals`)."""
    request = current_request()
    return request is not None and request.signum is not None


class Interrupted(Exception):
    """A run stopped by a signal before it had anything to save (the CLI exits 130 or 143)."""
