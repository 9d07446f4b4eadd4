"""Splitting a sweep over processes: deterministic, balanced by estimated cost.

The work left is a list of :class:`Unit` s, each one grid point and some of its seeds (the seeds
not yet in the results). Every process computes the same split from the same inputs (the grid,
the config and the finished ``(point, seed)`` keys that process 0 read and sent to all), so no
process needs to be told its share.

Cost of a unit (in work units, one per multiply-add of a gradient step's ``n x d x p`` products):

    cost = seeds * n * d * p * steps   (+ COMPILE_COST for each distinct program a process compiles)

A unit costing more than a fair share (the total over ``K``) is split by seeds into about
``cost / share`` parts, so a few large points do not leave processes idle. The units are then
assigned greedily, largest first (LPT), each to the process whose load would grow least, counting
a program the process has not compiled yet at :data:`COMPILE_COST` (so points sharing a compiled
program tend to stay together). Ties go to the lowest process. The split changes which process
runs a seed, never its numbers (on CPUs seeds are mapped, so a seed's row does not depend on the
seeds beside it; on GPUs they are vmapped, see :mod:`jaxrecon.sweeps.points`).
"""

from __future__ import annotations

import math
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


def remaining_units(points: Sequence[GridPoint], seeds: int, done: Mapping[tuple, set], processes: int,
                    steps: int) -> list[Unit]:
    """The units still to run: each point's missing seeds (``done``: point key -> finished seeds),
    a point costing more than ``1 / processes`` of the total split by seeds."""
    units = []
    for i, pt in enumerate(points):
        missing = tuple(s for s in range(seeds) if s not in done.get(pt.key(), ()))
        if missing:
            units.append(Unit(i, pt, missing))
    total = sum(u.cost(steps) for u in units)
    if processes <= 1 or total == 0:
        return units
    share = total / processes
    out = []
    for u in units:
        parts = min(len(u.seeds), processes, max(1, math.ceil(u.cost(steps) / share - 1e-9)))
        out += [Unit(u.index, u.point, s) for s in _chunks(u.seeds, parts)]
    return out


def assign(units: Sequence[Unit], processes: int, steps: int, program: Callable[[Unit], tuple],
           compile_cost: float = COMPILE_COST) -> list[list[Unit]]:
    """Units per process (greedy LPT with compile affinity, see the module docstring); each
    process's units in grid order. ``program(unit)``: the key of the compiled program it runs."""
    loads = [0.0] * processes
    programs: list[set] = [set() for _ in range(processes)]
    shares: list[list[Unit]] = [[] for _ in range(processes)]
    order = sorted(units, key=lambda u: (-u.cost(steps), u.index, u.seeds))
    for u in order:
        key = program(u)
        grown = [loads[k] + u.cost(steps) + (0.0 if key in programs[k] else compile_cost)
                 for k in range(processes)]
        k = min(range(processes), key=lambda j: (grown[j], j))
        loads[k] = grown[k]
        programs[k].add(key)
        shares[k].append(u)
    return [sorted(s, key=lambda u: (u.index, u.seeds)) for s in shares]


def split(points: Sequence[GridPoint], seeds: int, done: Mapping[tuple, set], processes: int, steps: int,
          program: Callable[[Unit], tuple], compile_cost: float = COMPILE_COST) -> list[list[Unit]]:
    """The shares of the work left: :func:`remaining_units` assigned by :func:`assign`."""
    return assign(remaining_units(points, seeds, done, processes, steps), processes, steps, program,
                  compile_cost)
