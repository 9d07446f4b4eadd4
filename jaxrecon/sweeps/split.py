"""Splitting a sweep over processes: deterministic, balanced by estimated cost.

The work left is a list of :class:`Unit` s, each one grid point and some of its seeds (the seeds
not yet in the results). Every process computes the same split from the same inputs (the grid,
the config and the finished ``(point, seed)`` keys that process 0 read and sent to all), so no
process needs to be told its share.

Cost of a unit (in work units, one per multiply-add of a gradient step's ``n x d x p`` products):

    cost = seeds * n * d * p * steps   (+ COMPILE_COST for each distinct program a process compiles)

The units sharing a compiled program are assigned together, largest first (LPT), and cut into
smaller pieces (a single large point by seeds, so a few large points do not leave processes idle)
only while that shortens the longest process's estimated time (:func:`assign`): every piece
costs its process one compile (:data:`COMPILE_COST`). The split changes which process
runs a seed, never its numbers (on CPUs seeds are mapped, so a seed's row does not depend on the
seeds beside it; on GPUs they are vmapped, see :mod:`jaxrecon.sweeps.points`).
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

from .points import GridPoint

#: A compile in work units: about 5 s of XLA compilation against ~7e9 work units/s of a CPU core
#: running small points (a heuristic; it moves points between processes, never changes results).
COMPILE_COST = 3e10


class Unit(NamedTuple):
    """Seeds ``seeds`` of the grid point at position ``index`` of the grid."""

    index: int
    point: GridPoint
    seeds: tuple

    def cost(self, steps: int) -> float:
        return point_cost(self.point, steps) * len(self.seeds)


def point_cost(point: GridPoint, steps: int) -> float:
    """Work units of one seed of ``point`` (``n d p steps``)."""
    return float(point.n) * point.d * point.p * steps


def _chunks(seeds: tuple, parts: int) -> list[tuple]:
    """``seeds`` cut into ``parts`` contiguous runs of (nearly) equal length, longer ones first."""
    q, r = divmod(len(seeds), parts)
    out, at = [], 0
    for i in range(parts):
        size = q + (1 if i < r else 0)
        out.append(seeds[at:at + size])
        at += size
    return out


def remaining_units(points: Sequence[GridPoint], seeds: int, done: Mapping[tuple, set]) -> list[Unit]:
    """The units still to run: each point's missing seeds (``done``: point key -> finished seeds)."""
    units = []
    for i, pt in enumerate(points):
        missing = tuple(s for s in range(seeds) if s not in done.get(pt.key(), ()))
        if missing:
            units.append(Unit(i, pt, missing))
    return units


def _lpt(pieces: list, processes: int, steps: int, compile_cost: float) -> tuple[list[list], float]:
    """Pieces (lists of units sharing a program) onto processes, largest first to the least loaded
    (ties: lowest process); returns the assignment and its makespan."""
    cost = lambda piece: compile_cost + sum(u.cost(steps) for u in piece)
    loads, out = [0.0] * processes, [[] for _ in range(processes)]
    for piece in sorted(pieces, key=lambda pc: (-cost(pc), pc[0].index, pc[0].seeds)):
        k = min(range(processes), key=lambda j: (loads[j], j))
        loads[k] += cost(piece)
        out[k].append(piece)
    return out, max(loads)


def _cut(piece: list, steps: int) -> list[list]:
    """A piece cut in two of nearly equal run cost (units largest first, each to the lighter half).
    A unit holding more than half the run cost (with two or more seeds) is taken out instead and
    cut by seeds: three pieces, the halves running a program of fewer seeds."""
    big = max(piece, key=lambda u: (u.cost(steps), -u.index))
    if len(big.seeds) > 1 and 2 * big.cost(steps) > sum(u.cost(steps) for u in piece):
        cut = (len(big.seeds) + 1) // 2
        rest = [u for u in piece if u is not big]
        return ([rest] if rest else []) + [[Unit(big.index, big.point, big.seeds[:cut])],
                                           [Unit(big.index, big.point, big.seeds[cut:])]]
    a, b, ca, cb = [], [], 0.0, 0.0
    for u in sorted(piece, key=lambda u: (-u.cost(steps), u.index, u.seeds)):
        if ca <= cb:
            a.append(u)
            ca += u.cost(steps)
        else:
            b.append(u)
            cb += u.cost(steps)
    return [a, b]


def assign(units: Sequence[Unit], processes: int, steps: int, program: Callable[[Unit], tuple],
           compile_cost: float = COMPILE_COST) -> list[list[Unit]]:
    """Units per process, each process's in grid order. ``program(unit)``: the key of the compiled
    program the unit runs.

    The units sharing a program start as one piece costing one compile plus their runs; pieces
    go largest first to the least-loaded process (LPT). While it lowers the makespan by more than
    1 %, the piece with the largest run cost is cut in two (each half compiles its program on its
    own process; a single point is cut by seeds). So a compile-dominated grid keeps each program
    on one process, and a run-dominated one spreads its points, and the seeds of its largest."""
    groups: dict = {}
    for u in units:
        groups.setdefault(program(u), []).append(u)
    pieces = list(groups.values())
    best, makespan = _lpt(pieces, processes, steps, compile_cost)
    while True:
        run = lambda pc: sum(u.cost(steps) for u in pc)
        cut = [pc for pc in pieces if len(pc) > 1 or len(pc[0].seeds) > 1]
        if not cut:
            break
        big = max(cut, key=lambda pc: (run(pc), -pc[0].index))
        trial = [pc for pc in pieces if pc is not big] + _cut(big, steps)
        shares, span = _lpt(trial, processes, steps, compile_cost)
        if span >= 0.99 * makespan:
            break
        pieces, best, makespan = trial, shares, span
    return [sorted((u for pc in share for u in pc), key=lambda u: (u.index, u.seeds)) for share in best]


def split(points: Sequence[GridPoint], seeds: int, done: Mapping[tuple, set], processes: int, steps: int,
          program: Callable[[Unit], tuple], compile_cost: float = COMPILE_COST) -> list[list[Unit]]:
    """The shares of the work left: :func:`remaining_units` assigned by :func:`assign`."""
    return assign(remaining_units(points, seeds, done), processes, steps, program, compile_cost)
