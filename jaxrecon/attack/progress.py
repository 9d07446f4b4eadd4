"""Progress of the multi-seed host loop: chunk sizing and what is shown after each chunk.

The number of steps a compiled chunk runs is a runtime argument, so the host loop sizes each
chunk (:class:`ChunkSizer`) to take about :data:`TARGET_SECONDS`, never more than the configured
``chunk`` steps: progress is updated every few seconds, or after every step when one step takes
longer. A chunk costs a fixed overhead (entering the compiled loop; under vmap every round also
evaluates the stall actions) plus a time per step that depends on the phase. The first two chunks
are one step each (the faster one bounds the overhead; the first also pays one-time costs); then a
chunk grows at most :data:`GROWTH` times over the one before.
A seed may enter a costlier phase inside a chunk (Levenberg-Marquardt after cheap first-order
steps), so the next chunk is sized for the slowest step of any phase of the method, a phase not
timed yet counting :data:`UNTIMED_SLOWDOWN` times the slowest timed one.

On a terminal the progress is a tqdm bar; otherwise one plain line per update at most every
:data:`LINE_SECONDS` (and a last one), on stderr. No time left is shown: seeds stop when they
converge, so the step budget does not say when the run ends.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .state import Phase, Status

#: Seconds a chunk is sized to take (progress updates come at least about this often).
TARGET_SECONDS = 6.0
#: A chunk is at most this many times longer (in steps) than the one before.
GROWTH = 4
#: A phase not timed yet may be this many times slower per step than the slowest timed one (an LM
#: step with 30 CG iterations took 8 first-order steps at d=100, n=20, p=20000, 4 seeds, CPU).
UNTIMED_SLOWDOWN = 8.0
#: Plain progress lines (output not a terminal) come at most this often, in seconds.
LINE_SECONDS = 2.0


class ChunkSizer:
    """Sizes the host loop's chunks from the times of the previous ones (see the module docstring).

    ``phases`` is the number of phases of the method (kinds ``0 .. phases-1``)."""

    def __init__(self, cap: int, phases: int = 1, target: float = TARGET_SECONDS):
        self.cap, self.phases, self.target = int(cap), int(phases), float(target)
        self.overhead = None  # seconds per chunk besides its steps
        self.probes = 0  # one-step chunks timed
        self.per_step = {}  # phase -> seconds per step
        self.last = 0

    def next(self) -> int:
        """Steps of the next chunk."""
        if self.probes < 2 or not self.per_step:
            self.last = 1 if self.probes < 2 else min(self.cap, GROWTH)
            return self.last
        slowest = max(self.per_step.values())
        per_step = max(self.per_step.get(p, slowest * UNTIMED_SLOWDOWN) for p in range(self.phases))
        room = self.target - self.overhead
        want = int(room / per_step) if room > 0 else self.cap  # overhead-bound: longer chunks pay
        self.last = int(max(1, min(self.cap, GROWTH * self.last, want)))
        return self.last

    def timed(self, steps: int, seconds: float, phases: frozenset) -> None:
        """Record a chunk of ``steps`` that took ``seconds`` with seeds running in ``phases``
        (at its start or end)."""
        if self.probes < 2:  # a one-step probe: an upper bound of the overhead
            self.probes += 1
            self.overhead = seconds if self.overhead is None else min(self.overhead, seconds)
            return
        per_step = max(seconds - self.overhead, 0.1 * seconds) / max(1, steps)
        phases = {min(int(p), self.phases - 1) for p in phases} or {0}  # stalled seeds restart phase 0
        if len(phases) == 1:
            self.per_step[phases.pop()] = per_step
        else:  # a mixed chunk: a lower bound for its costlier phases
            for p in phases:
                self.per_step[p] = max(self.per_step.get(p, 0.0), per_step)


def _phase_counts(state) -> str:
    status, phase = np.asarray(state.status), np.asarray(state.phase)
    running = phase[status == Status.RUNNING]
    names = {int(p): p.name.lower() for p in Phase}
    return ", ".join(f"{names.get(int(p), p)} {int((running == p).sum())}" for p in np.unique(running))


def phases_running(state) -> frozenset:
    """The phases of the seeds still running."""
    status, phase = np.asarray(state.status), np.asarray(state.phase)
    return frozenset(int(p) for p in np.unique(phase[status == Status.RUNNING]))


class Progress:
    """Shows steps, phases and the median loss after each chunk (a tqdm bar on a terminal, plain
    lines otherwise, nothing when disabled). Plain lines show the seconds since ``t0`` (default: now;
    the driver passes the attack's start, so a split start's two stages count on one clock)."""

    def __init__(self, total: int, seeds: int, enabled: bool = True, stream=None, t0: float | None = None):
        self.total, self.seeds, self.enabled = total, seeds, enabled
        self.stream = sys.stderr if stream is None else stream
        self.desc = f"reconstruct ({seeds} seeds)"
        self.bar, self.last_line, self.pending = None, None, None
        self.t0 = time.perf_counter() if t0 is None else t0
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", dynamic_ncols=True, file=self.stream,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}, {rate_fmt}{postfix}]")

    def update(self, done_steps: int, state) -> None:
        if not self.enabled:
            return
        status, loss = np.asarray(state.status), np.asarray(state.loss)
        running = int((status == Status.RUNNING).sum())
        fields = {"running": f"{running}/{self.seeds}", "phase": _phase_counts(state) or "-",
                  "loss_median": f"{np.median(loss):.3g}"}
        if self.bar is not None:
            self.bar.n = done_steps
            self.bar.set_postfix(fields, refresh=False)
            self.bar.refresh()
            return
        now = time.perf_counter()
        line = (f"{self.desc}: step {done_steps}/{self.total}  running {fields['running']}  "
                f"phase {fields['phase']}  loss median {fields['loss_median']}  {now - self.t0:.0f}s")
        if self.last_line is None or now - self.last_line >= LINE_SECONDS:
            self._write(line)
            self.last_line, self.pending = now, None
        else:
            self.pending = line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.pending is not None:
            self._write(self.pending)

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
