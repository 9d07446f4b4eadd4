"""One case of the reliability suite: a ``jaxrecon`` command on bad input, corrupted state or a fault,
and what a careful program does with it.

Outcomes (:func:`judge`):

* ``clean``: what was expected happened. For ``expect="error"``: a non-zero exit, a message on
  stderr starting with ``jaxrecon:`` that contains every ``mention`` (the user's flag, path or
  value), no Python traceback, no file of ``forbid`` left behind, ``check`` content.
* ``misleading``: handled (no traceback, no native crash, no hang) but the exit code, the message
  or the files say something else than the truth (exit 0 on an error, a message that names an
  internal name instead of the user's flag, a half-written file).
* ``bad``: a traceback, a native crash (a signal, exit 134/139), a hang past ``timeout``, or code
  run from a file (a ``forbid`` marker created by a crafted input).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

OUTCOMES = ("clean", "misleading", "bad")


@dataclasses.dataclass(frozen=True)
class Case:
    """``argv``: the arguments after ``jaxrecon`` (strings; ``{dir}`` is replaced by the case's working
    directory). ``setup(dir)`` writes the case's input files first. ``expect``: ``"error"`` or
    ``"ok"``. ``mention``: substrings the ``jaxrecon:`` lines must contain. ``forbid``: paths (relative
    to the working directory) that must not exist afterwards; ``bad_if_present``: paths whose presence
    is ``bad`` (a marker file written by code a crafted input smuggled in). ``check(dir, proc)``
    returns a problem (a string, judged ``misleading``) or ``None``. ``run(dir)``, when given,
    replaces the subprocess altogether and returns ``(outcome, detail)`` (multi-process faults)."""

    name: str
    area: str
    argv: tuple = ()
    setup: Optional[Callable[[Path], None]] = None
    expect: str = "error"
    mention: tuple = ()
    forbid: tuple = ()
    bad_if_present: tuple = ()
    check: Optional[Callable[[Path, subprocess.CompletedProcess], Optional[str]]] = None
    run: Optional[Callable[[Path], tuple]] = None
    timeout: float = 180.0
    env: tuple = ()  # (name, value) pairs added to the environment


def command() -> list:
    """How to run ``jaxrecon``: the installed script, else ``python -m jaxrecon.cli``."""
    exe = shutil.which("jaxrecon")
    return [exe] if exe else [sys.executable, "-m", "jaxrecon.cli"]


def run_case(case: Case, workdir: Path) -> tuple:
    """``(outcome, detail)`` of one case run in the empty directory ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if case.setup is not None:
        case.setup(workdir)
    if case.run is not None:
        return case.run(workdir)
    argv = [a.replace("{dir}", str(workdir)) for a in case.argv]
    env = {**os.environ, "JAXRECON_CACHE_DIR": "off", **dict(case.env)}
    try:
        proc = subprocess.run(command() + argv, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=case.timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "bad", f"no answer in {case.timeout:.0f} s"
    return judge(case, workdir, proc)


def judge(case: Case, workdir: Path, proc: subprocess.CompletedProcess) -> tuple:
    err = proc.stderr or ""
    said = [line for line in err.splitlines() if line.startswith("jaxrecon:")]
    last = said[-1] if said else (err.strip().splitlines() or [""])[-1]
    for rel in case.bad_if_present:
        if (workdir / rel).exists():
            return "bad", f"{rel} was created (code ran from the input)"
    if proc.returncode < 0 or proc.returncode in (134, 139):
        return "bad", f"native crash (exit {proc.returncode})"
    if "Traceback (most recent call last)" in err:
        return "bad", "traceback: " + err.strip().splitlines()[-1][:200]
    if case.expect == "error":
        if proc.returncode == 0:
            return "misleading", "exit 0 on bad input"
        if not said:
            return "misleading", f"exit {proc.returncode} without a jaxrecon: message ({last[:120]!r})"
        missing = [m for m in case.mention if not any(m in line for line in said)]
        if missing:
            return "misleading", f"message does not name {missing}: {said[-1][:200]!r}"
    elif proc.returncode != 0:
        return "misleading", f"exit {proc.returncode}: {last[:200]!r}"
    for rel in case.forbid:
        if (workdir / rel).exists():
            return "misleading", f"{rel} left behind"
    if case.check is not None:
        problem = case.check(workdir, proc)
        if problem:
            return "misleading", problem
    return "clean", last[:200]
