"""Progress of the multi-seed host loop: chunk sizing and what is shown after each chunk.

The number of steps a compiled chunk runs is a runtime argument, so the host loop sizes each
chunk (:class:`ChunkSizer`) by time, never more than the configured ``chunk`` steps: a chunk is
sized to take about :data:`TARGET_SECONDS`, so progress is updated every few seconds and a signal,
checked between chunks, takes effect within about that time (or one step, when a step alone takes
longer: the ResNet's). The first chunk is one step; each later one at most :data:`GROWTH` times the
one before, from the seconds per step of the chunks so far measured as a chunk's time over its steps.
That measure includes the chunk's fixed cost (entering the compiled loop, the first call's one-time
costs), so it never underestimates a step and a chunk sized from it is not longer than planned.
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

#: Seconds a chunk is sized to take: progress updates come about this often, and a signal asks
#: the loop to stop between two chunks, so it takes effect within about this time.
TARGET_SECONDS = 2.0
#: A chunk is at most this many times longer (in steps) than the one before.
GROWTH = 4
#: A phase not timed yet may be this many times slower per step than the slowest timed one (an LM
#: step with 30 CG iterations took 8 first-order steps at d=100, n=20, p=20000, 4 seeds, CPU).
UNTIMED_SLOWDOWN = 8.0
#: Plain progress lines (output not a terminal) come at most this often, in seconds.
LINE_SECONDS = 2.0


class ChunkSizer:
    """Sizes the host loop's chunks by time from the times of the previous ones (see the module
    docstring): one step first, then at most ``GROWTH`` times the last chunk, at most ``cap``
    steps, and no more steps than fit in ``target`` seconds at the slowest step measured.

    ``phases`` is the number of phases of the method (kinds ``0 .. phases-1``)."""

    def __init__(self, cap: int, phases: int = 1, target: float = TARGET_SECONDS):
        self.cap, self.phases, self.target = int(cap), int(phases), float(target)
        self.per_step = {}  # phase -> seconds per step (a chunk's time over its steps: an upper bound)
        self.last = 0

    def next(self) -> int:
        """Steps of the next chunk."""
        if not self.per_step:
            self.last = 1
            return 1
        slowest = max(self.per_step.values())
        per_step = max(self.per_step.get(p, slowest * UNTIMED_SLOWDOWN) for p in range(self.phases))
        want = int(self.target / per_step) if per_step > 0 else self.cap
        self.last = int(max(1, min(self.cap, GROWTH * self.last, want)))
        return self.last

    def timed(self, steps: int, seconds: float, phases: frozenset) -> None:
        """Record a chunk of ``steps`` that took ``seconds`` with seeds running in ``phases``
        (at its start or end)."""
        per_step = max(float(seconds), 0.0) / max(1, int(steps))
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


class StepProgress:
    """Progress of a loop that advances in chunks of steps: a tqdm bar on a terminal, otherwise one
    plain line on ``stream`` at most every :data:`LINE_SECONDS` (and the last one at :meth:`close`),
    nothing when disabled. Plain lines show the seconds since ``t0`` (default: now). The attack
    (:class:`Progress`) and network training (:mod:`jaxrecon.models.train`) report through it."""

    def __init__(self, total: int, desc: str, enabled: bool = True, stream=None, t0: float | None = None):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = sys.stderr if stream is None else stream
        self.bar, self.last_line, self.pending = None, None, None
        self.t0 = time.perf_counter() if t0 is None else t0
        if enabled and _is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=self.stream,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                       "[{elapsed}, {rate_fmt}{postfix}]")

    def show(self, step: int, fields: dict, text: str) -> None:
        """Step ``step``: ``fields`` as the bar's postfix, or the line ``desc: step S/T  text  Ns``."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(fields, refresh=False)
            self.bar.refresh()
            return
        now = time.perf_counter()
        line = f"{self.desc}: step {step}/{self.total}  {text}  {now - self.t0:.0f}s"
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


class Progress(StepProgress):
    """Shows steps, phases and the median loss after each chunk (:class:`StepProgress`). The driver
    passes the attack's start as ``t0``, so a split start's two stages count on one clock."""

    def __init__(self, total: int, seeds: int, enabled: bool = True, stream=None, t0: float | None = None):
        self.seeds = seeds
        super().__init__(total, f"reconstruct ({seeds} seeds)", enabled, stream, t0)

    def update(self, done_steps: int, state) -> None:
        if not self.enabled:
            return
        status, loss = np.asarray(state.status), np.asarray(state.loss)
        running = int((status == Status.RUNNING).sum())
        fields = {"running": f"{running}/{self.seeds}", "phase": _phase_counts(state) or "-",
                  "loss_median": f"{np.median(loss):.3g}"}
        self.show(done_steps, fields, f"running {fields['running']}  phase {fields['phase']}  "
                                      f"loss median {fields['loss_median']}")


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
