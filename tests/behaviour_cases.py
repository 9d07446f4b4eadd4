"""Recorded behaviour cases: fixed-seed attacks and a sweep, run by ``test_behaviour.py``.

``python tests/behaviour_cases.py`` records ``tests/data/behaviour.json`` (done once, before the
refactor of the attack into ``jaxrecon.attack``; the seeds were vmapped then, so the cases force
``batching="vmap"``); the test reruns the same cases and compares: ``published`` and
``adam`` give the same numbers, ``adam-lm`` (whose LM trajectories are chaotic) the same outcome
per seed with step counts within a few percent.
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np

import jaxrecon as jr

DATA = Path(__file__).with_name("data") / "behaviour.json"
D, N, P_OVER_DN, SEEDS, STEPS = 10, 4, 20, 3, 400
STORAGE = {"dense": None, "streamed": 200}
SWEEP = dict(name="behaviour", d=[8], n=[3], p_over_dn=[1.0, 6.0], seeds=2, steps=300,
             method=["published", "adam", "adam-lm"])


def attack_case(method: str, storage: str) -> dict:
    data = jr.synthetic(jax.random.key(1), N, D, dtype="float32")
    fmap = jr.RandomFeatures(jax.random.key(2), D, P_OVER_DN * D * N, block_size=STORAGE[storage], dtype="float32")
    target = jr.Target(fmap, jr.fit(fmap, data.x, data.y))
    res = jr.reconstruct_seeds(target, jax.random.key(3), N, SEEDS, method=method, steps=STEPS, chunk=100,
                               progress=False, batching="vmap")
    errors = [jr.match(data.x, xh).error_sign for xh in res.x_hat]
    return {"loss": [float(v) for v in res.loss], "steps": [int(v) for v in res.steps],
            "status": list(res.status), "error_sign": [float(e) for e in errors],
            "x_hat": np.asarray(res.x_hat, np.float64).round(9).tolist()}


def sweep_case() -> dict:
    from unittest import mock

    # recorded with the seeds vmapped, as every program was then (CPUs now map them by default)
    with mock.patch("jaxrecon.sweeps.points.seed_batching", lambda *a: "vmap"):
        table = jr.sweep(SWEEP, out=None, progress=False, plots=False, log=None)
    return {c: [v.item() if hasattr(v, "item") else v for v in table[c]]
            for c in ("d", "n", "p", "method", "seed", "loss", "error_sign", "steps", "status")}


def record() -> dict:
    out = {f"{m}/{s}": attack_case(m, s) for m in ("published", "adam", "adam-lm") for s in STORAGE}
    out["sweep"] = sweep_case()
    return out


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)  # as under pytest (tests/conftest.py)
    DATA.parent.mkdir(exist_ok=True)
    DATA.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {DATA}", file=sys.stderr)
