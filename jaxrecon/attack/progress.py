"""Progress of the multi-seed host loop: chunk sizing and what is shown after each chunk.

The number of steps a compiled chunk runs is a runtime argument, so the host loop sizes each
chunk from the time the previous one took: the first chunk is one step (a probe), later ones grow
at most :data:`GROWTH` times per chunk toward :data:`TARGET_SECONDS`, never past the configured
``chunk``. Progress is thus updated about every few seconds, or after every step when one step
takes longer. A seed entering a phase not timed yet (the first Levenberg-Marquardt steps after
cheap first-order ones) restarts the probe.

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
TARGET_SECONDS = 5.0
#: A chunk is at most this many times longer (in steps) than the one before.
GROWTH = 4
#: Plain progress lines (output not a terminal) come at most this often, in seconds.
LINE_SECONDS = 10.0


def next_chunk(prev: int, seconds: float, cap: int, target: float = TARGET_SECONDS) -> int:
    """Steps of the next chunk after one of ``prev`` steps that took ``seconds`` (``prev = 0``:
    nothing timed yet, probe with one step); between 1 and ``cap``."""
    if prev <= 0:
        return 1
    per_step = max(seconds, 1e-9) / prev
    want = int(target / per_step)
    return int(max(1, min(cap, GROWTH * prev, want)))


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
    lines otherwise, nothing when disabled)."""

    def __init__(self, total: int, seeds: int, enabled: bool = True, stream=None):
        self.total, self.seeds, self.enabled = total, seeds, enabled
        self.stream = sys.stderr if stream is None else stream
        self.desc = f"reconstruct ({seeds} seeds)"
        self.bar, self.last_line, self.pending = None, None, None
        self.t0 = time.perf_counter()
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
