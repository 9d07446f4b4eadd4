"""Recorded behaviour cases: fixed-seed attacks and sweeps, run by ``test_behaviour.py``.

A case records only what the code guarantees on every x86-64 CPU, so that a refactor of the attack
that changes behaviour is caught and another instruction set (AVX-512, AVX2, no FMA, SSE4.2: other
roundings in the last bit) is not:

* **exact** cases (``Attack.exact`` / ``Sweep.exact``) are float64 runs short enough, or
  contractive enough, that last-bit differences stay far below the tolerances of :func:`check`:
  ``published`` for 50 steps (its SGD at lr 20 with momentum 0.9 amplifies a difference about
  tenfold every 10 steps: 1e-16 becomes ~1e-11 at step 50 and O(1) by step 170), ``adam`` for 400
  steps (1e-9 apart at step 400 with and without FMA). Their loss, iterates, statuses and step
  counts are compared.
* **outcome** cases are float32 runs of methods whose trajectories are chaotic (SGD at lr 20, the
  LM phase, the plateau hand-over, stall actions, the population): the status of every seed, which
  seeds identify the training set (``error_sign <= 1e-3``), step counts within ``steps_rtol`` where
  they are stable (``None``: not compared; ``adam-lm-split``'s plateau hand-over moves by a few
  steps between CPUs, ``global``'s rounds end at chunk ends, which are sized by time) and
  invariants (rows on the sphere, a converged seed at or below the method's tolerance, a seed out
  of budget after exactly the budget, a finite loss).

``python tests/behaviour_cases.py`` records ``tests/data/behaviour.json``; ``python
tests/behaviour_cases.py --run NAME...`` prints the results of some cases as JSON (the test reruns
cases so, under another ``XLA_FLAGS=--xla_cpu_max_isa``). Every case names its method: none
depends on the library's default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Optional

DATA = Path(__file__).with_name("data") / "behaviour.json"
D, N, P_OVER_DN, SEEDS = 10, 4, 20, 3
STORAGE = {"dense": None, "streamed": 200}
IDENTIFIED = 1e-3  # error_sign at or below it: the seed found the training set
# exact cases: measured across instruction sets (AVX-512, AVX2, AVX without FMA, SSE4.2) the losses
# differ by <= 2e-8 relative, the iterates by <= 2e-8 (adam: its eps 1e-8 divides rounding errors of
# near-zero gradient entries; published: <= 4e-10), so a 500-fold margin; a changed step moves them
# by 1e-3 or more
LOSS_RTOL, X_ATOL = 1e-5, 1e-5
#: The named methods' stopping tolerances (status "converged" at a loss at or below it), as documented.
TOL = {"published": 1e-7, "adam": 1e-12, "adam-lm": 1e-12, "adam-lm-split": 1e-12, "global": 1e-12}


@dataclasses.dataclass(frozen=True)
class Attack:
    """``reconstruct_seeds`` with ``method`` on a fixed problem (d=10, n=4, p=20dn, V stored or streamed)."""

    method: str
    storage: str
    dtype: str
    steps: int
    exact: bool = False
    steps_rtol: Optional[float] = 0.0  # outcome cases: step counts within it (None: not compared)
    seeds: int = SEEDS


@dataclasses.dataclass(frozen=True)
class Sweep:
    """``jr.sweep`` over d=8, n=3, p/(dn) in {1, 6}, two seeds per point."""

    method: tuple
    steps: int
    x64: bool
    exact: bool = False
    steps_rtol: Optional[float] = 0.0


CASES = {
    # exact: float64, every number recorded
    "published/dense": Attack("published", "dense", "float64", 50, exact=True),
    "published/streamed": Attack("published", "streamed", "float64", 50, exact=True),
    "adam/dense": Attack("adam", "dense", "float64", 400, exact=True),
    "adam/streamed": Attack("adam", "streamed", "float64", 400, exact=True),
    "sweep/first-order": Sweep(("published", "adam"), 50, x64=True, exact=True),
    # outcomes: float32, as the library runs by default
    "published/dense/float32": Attack("published", "dense", "float32", 400),
    "adam-lm/dense": Attack("adam-lm", "dense", "float32", 400, steps_rtol=0.05),
    "adam-lm/streamed": Attack("adam-lm", "streamed", "float32", 400, steps_rtol=0.05),
    "adam-lm-split/dense": Attack("adam-lm-split", "dense", "float32", 400, steps_rtol=None),
    "global/dense": Attack("global", "dense", "float32", 400, steps_rtol=None),
    "sweep/adam-lm": Sweep(("adam-lm",), 400, x64=False, steps_rtol=0.05),
}
EXACT = [name for name, case in CASES.items() if case.exact]


def run_attack(case: Attack) -> dict:
    import jax
    import numpy as np

    import jaxrecon as jr

    data = jr.synthetic(jax.random.key(1), N, D, dtype=case.dtype)
    fmap = jr.RandomFeatures(jax.random.key(2), D, P_OVER_DN * D * N, block_size=STORAGE[case.storage],
                             dtype=case.dtype)
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    res = jr.reconstruct_seeds(target, jax.random.key(3), N, case.seeds, method=case.method, steps=case.steps,
                               chunk=100, progress=False)
    return {"loss": [float(v) for v in res.loss], "steps": [int(v) for v in res.steps],
            "status": list(res.status),
            "error_sign": [float(jr.match(data.x, xh).error_sign) for xh in res.x_hat],
            "x_hat": np.asarray(res.x_hat, np.float64).round(12).tolist()}


def run_sweep(case: Sweep) -> dict:
    import jaxrecon as jr

    config = dict(name="behaviour", d=[8], n=[3], p_over_dn=[1.0, 6.0], seeds=2, steps=case.steps,
                  method=list(case.method), x64=case.x64)
    table = jr.sweep(config, out=None, progress=False, plots=False, log=None)
    return {c: [v.item() if hasattr(v, "item") else v for v in table[c]]
            for c in ("d", "n", "p", "method", "seed", "loss", "error_sign", "steps", "status", "identified")}


def run(name: str) -> dict:
    case = CASES[name]
    return run_attack(case) if isinstance(case, Attack) else run_sweep(case)


def _close(got, want, rtol, atol) -> bool:
    return len(got) == len(want) and all(math.isclose(g, w, rel_tol=rtol, abs_tol=atol) for g, w in zip(got, want))


def _flat(x):
    return [v for row in x for v in _flat(row)] if isinstance(x, list) else [x]


def check(name: str, got: dict, want: dict) -> list[str]:
    """What differs between a rerun (``got``) and the recording (``want``) of case ``name``: [] if nothing."""
    case, bad = CASES[name], []
    steps_rtol = 0.0 if case.exact else case.steps_rtol
    methods = want["method"] if isinstance(case, Sweep) else [case.method] * len(want["status"])
    for c in ("d", "n", "p", "method", "seed"):
        if c in want and got[c] != want[c]:
            bad.append(f"{c}: {got[c]} != recorded {want[c]}")
    if "identified" in want and got["identified"] != want["identified"]:
        bad.append(f"identified (sweep column): {got['identified']} != recorded {want['identified']}")
    if got["status"] != want["status"]:
        bad.append(f"status: {got['status']} != recorded {want['status']}")
    found, wanted = [e <= IDENTIFIED for e in got["error_sign"]], [e <= IDENTIFIED for e in want["error_sign"]]
    if found != wanted:
        bad.append(f"identified: {found} != recorded {wanted} (error_sign {got['error_sign']})")
    if steps_rtol is not None and not _close(got["steps"], want["steps"], steps_rtol, 0):
        bad.append(f"steps: {got['steps']} not within {steps_rtol:.0%} of recorded {want['steps']}")
    if case.exact:
        if not _close(got["loss"], want["loss"], LOSS_RTOL, 1e-12):
            bad.append(f"loss: {got['loss']} != recorded {want['loss']} (rtol {LOSS_RTOL:g})")
        if "x_hat" in want and not _close(_flat(got["x_hat"]), _flat(want["x_hat"]), 0, X_ATOL):
            bad.append(f"x_hat: differs from the recording by more than {X_ATOL:g}")
    bad += invariants(case, got, methods)
    return bad


def invariants(case, got: dict, methods: list) -> list[str]:
    """What holds for any run, recorded or not: finite losses, a converged seed at or below its
    method's tolerance, a seed out of budget after exactly the budget, rows on the sphere."""
    bad = []
    for i, (loss, steps, status, m) in enumerate(zip(got["loss"], got["steps"], got["status"], methods)):
        if not math.isfinite(loss):
            bad.append(f"seed {i}: loss {loss} is not finite")
        if status == "converged" and loss > TOL[m]:
            bad.append(f"seed {i}: converged at loss {loss} > the method's tolerance {TOL[m]}")
        if status == "budget" and steps != case.steps:
            bad.append(f"seed {i}: out of budget after {steps} steps, not {case.steps}")
    for i, x in enumerate(got.get("x_hat", [])):
        for row in x:
            norm = math.sqrt(sum(v * v for v in row))
            if not math.isclose(norm, math.sqrt(D), rel_tol=1e-5):
                bad.append(f"seed {i}: a row of norm {norm}, not sqrt(d) = {math.sqrt(D):.6f}")
                break
    return bad


def record() -> dict:
    out = {name: run(name) for name in CASES}
    for name, got in out.items():
        if not CASES[name].exact:
            got.pop("x_hat", None)  # compared only in exact cases (invariants read the rerun's)
    return out


if __name__ == "__main__":
    import jax

    from jaxrecon.cache import enable_compilation_cache

    jax.config.update("jax_enable_x64", True)  # as under pytest (tests/conftest.py)
    enable_compilation_cache()  # $JAXRECON_CACHE_DIR, as under pytest; XLA_FLAGS are part of its keys
    if sys.argv[1:2] == ["--run"]:
        json.dump({name: run(name) for name in sys.argv[2:]}, sys.stdout)
    else:
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_text(json.dumps(record(), indent=1) + "\n")
        print(f"wrote {DATA}", file=sys.stderr)
