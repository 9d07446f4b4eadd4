"""Each prediction of :mod:`jaxrecon.theory` against measurement: sign flips and thresholds.

    nice -n 10 python experiments/theory_check.py --out benchmarks/results/theory_check   # ~6 min, 2 cores

**Sign flips.** For relu, relu_tanh, tanh, erf and gelu: random-features regression at
``p = 5 d n`` (d = 25, n = 6, so p = 750, well above the threshold), 8 seeds, the default attack
(``adam-lm``, 2000 steps). A training row is *recovered* when its sign-aware error is ``<= 1e-2``
(:func:`jaxrecon.outcomes.row_outcomes`) and *flipped* when, recovered, its plain error
``||x_i - x_hat_j|| / sqrt(d)`` is above ``1e-2``: it came out as ``-x_i``. The measured flip
rate (with a 99 % Clopper-Pearson interval) is compared with :data:`jaxrecon.theory.FLIP_RATE` for
the activation's symmetry class (:func:`jaxrecon.theory.flip_check`).

The starts are random (uniform on the sphere), not planted: a start planted at ``X + 0.1 N(0, I)``
sits in the basin of ``X`` and never shows which of two symmetric zeros an attack lands in. A
start law symmetric under ``x -> -x`` per row is also what makes the odd class's prediction exact
(each recovered row flipped with probability 1/2).

**Thresholds.** The counting threshold ``p* = d n`` against the measured one of
``benchmarks/results/sharp_law/thresholds.csv`` (logistic fit of P(identified), planted starts),
and the label-fitting threshold ``p = n`` against the training loss of the min-norm fit (float64)
at ``p`` around ``n``.

Outputs (under ``--out``): ``flips.csv``, ``thresholds.csv``, ``theory_check.md`` (both tables),
``run.json`` (config, versions, seconds).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS = ["relu", "relu_tanh", "tanh", "erf", "gelu"]
D, N, P_OVER_DN, SEEDS, STEPS = 25, 6, 5, 8, 2000
#: Rows within this (per-coordinate) error are recovered; the plain error tells the sign.
TOL = 1e-2
#: Label-fitting check: p from n/2 to 2n, a fit of the labels counts as exact below this relative loss.
LABEL_TOL = 1e-12
FLIP_COLUMNS = ("activation", "symmetry", "d", "n", "p", "seeds", "solved", "rows", "recovered", "flipped",
                "flip_rate", "lo", "hi", "predicted_lo", "predicted_hi", "consistent", "seconds")
THRESHOLD_COLUMNS = ("threshold", "d", "n", "predicted_p", "measured_p", "measured_lo", "measured_hi", "source")


def _attack_trials():
    spec = importlib.util.spec_from_file_location("partial_recovery", Path(__file__).with_name("partial_recovery.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.attack_trials


def flip_row(activation: str, d: int, n: int, p: int, seeds: int, steps: int, seed: int = 0) -> dict:
    """Attack ``seeds`` trials and count recovered and flipped rows (module docstring)."""
    from jaxrecon import theory
    from jaxrecon.outcomes import method_tolerance, row_outcomes, solved

    arrays = _attack_trials()(d, n, p, seeds, seed, steps=steps, activation=activation)
    recovered = flipped = 0
    for s in range(seeds):
        r = row_outcomes(arrays["x_hat"][s], arrays["x"][s], TOL)
        recovered += int(r.recovered.sum())
        flipped += int((r.recovered & (r.error_plain > TOL)).sum())
    symmetry = theory.summary(activation)["symmetry"]
    check = theory.flip_check(symmetry, flipped, recovered)
    return {"activation": activation, "symmetry": symmetry, "d": d, "n": n, "p": p, "seeds": seeds,
            "solved": int(solved(arrays["loss"], method_tolerance("adam-lm")).sum()), "rows": seeds * n,
            "recovered": recovered, "flipped": flipped, "flip_rate": check["rate"], "lo": check["lo"],
            "hi": check["hi"], "predicted_lo": check["predicted_lo"], "predicted_hi": check["predicted_hi"],
            "consistent": check["consistent"], "seconds": arrays["seconds"]}


def label_threshold_row(d: int, n: int, seeds: int, seed: int = 0) -> dict:
    """The least ``p`` at which the min-norm fit interpolates the labels (relative training loss
    ``<= LABEL_TOL`` in float64) in at least half of the seeds, against the prediction ``p = n``.

    At ``p = n`` the ``n x n`` feature matrix of relu is singular whenever a feature is off on every
    row (probability ``2^-n`` per feature), so a few seeds need ``p = n + 1``."""
    import jax

    from jaxrecon import RandomFeatures, synthetic, x64
    from jaxrecon.models.rf import fit_with_info
    from jaxrecon.theory import label_threshold

    frac = {}
    with x64():
        for p in range(max(1, n // 2), 2 * n + 1):
            exact = []
            for s in range(seeds):
                k_data, k_model = jax.random.split(jax.random.fold_in(jax.random.key(seed), s))
                data = synthetic(k_data, n, d, 0.5, dtype="float64")
                fitted = fit_with_info(RandomFeatures(k_model, d, p, "relu", dtype="float64"), data.x, data.y)
                exact.append(float(fitted.train_loss) <= LABEL_TOL * float(np.mean(np.asarray(data.y) ** 2)))
            frac[p] = float(np.mean(exact))
    first = min(p for p in frac if all(frac[q] >= 0.5 for q in frac if q >= p))
    shown = ", ".join(f"p={p}: {frac[p]:.2f}" for p in range(n - 1, n + 2) if p in frac)
    return {"threshold": "label-fitting (p = n)", "d": d, "n": n, "predicted_p": label_threshold(n),
            "measured_p": first, "measured_lo": min(p for p in frac if frac[p] > 0),
            "measured_hi": min(p for p in frac if all(frac[q] == 1 for q in frac if q >= p)),
            "source": f"min-norm relu fit, {seeds} seeds; fraction interpolating {shown}; "
                      "measured_p: 1/2 of seeds, lo: first, hi: all"}


def counting_rows(path: Path) -> list[dict]:
    """The measured identification thresholds of the sharp-law sweep, beside ``p* = d n``."""
    from jaxrecon.theory import counting_threshold

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        d, n = int(r["d"]), int(r["n"])
        out.append({"threshold": "counting (p* = d n)", "d": d, "n": n, "predicted_p": counting_threshold(d, n),
                    "measured_p": round(float(r["logit_p_over_dn"]) * d * n, 1),
                    "measured_lo": round(float(r["logit_lo"]) * d * n, 1),
                    "measured_hi": round(float(r["logit_hi"]) * d * n, 1),
                    "source": "sharp_law/thresholds.csv: logistic 1/2 crossing of P(identified), 95 % bootstrap"})
    return out


def _fmt(v):
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3g}"
    return str(v)


def markdown(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict], columns) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def run(out, activations=ACTIVATIONS, d: int = D, n: int = N, p_over_dn: float = P_OVER_DN, seeds: int = SEEDS,
        steps: int = STEPS, sharp_law: Path = ROOT / "benchmarks" / "results" / "sharp_law" / "thresholds.csv",
        progress: bool = True) -> tuple[list, list]:
    """Write ``flips.csv``, ``thresholds.csv``, ``theory_check.md`` and ``run.json``; return both tables."""
    from jaxrecon.io import versions, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    flips = []
    for a in activations:
        flips.append(flip_row(a, d, n, int(p_over_dn * d * n), seeds, steps))
        if progress:
            f = flips[-1]
            print(f"{a} ({f['symmetry']}): {f['flipped']}/{f['recovered']} recovered rows flipped, "
                  f"{f['solved']}/{seeds} solved, {f['seconds']:.1f} s", flush=True)
    thresholds = counting_rows(sharp_law) + [label_threshold_row(d, n, seeds)]
    write_csv(out / "flips.csv", flips, FLIP_COLUMNS)
    write_csv(out / "thresholds.csv", thresholds, THRESHOLD_COLUMNS)
    md_flip = [c for c in FLIP_COLUMNS if c not in ("d", "n", "seconds")]
    (out / "theory_check.md").write_text(
        f"# Theory check\n\nSign flips at p = {p_over_dn:g} d n (d = {d}, n = {n}), {seeds} seeds, random starts; "
        f"recovered: sign-aware error <= {TOL:g}; flipped: recovered with plain error > {TOL:g}; "
        "interval: 99 % Clopper-Pearson.\n\n" + markdown(flips, md_flip)
        + "\n\n## Thresholds\n\n" + markdown(thresholds, THRESHOLD_COLUMNS) + "\n")
    write_json(out / "run.json", {"config": {"activations": list(activations), "d": d, "n": n, "p_over_dn": p_over_dn,
                                             "seeds": seeds, "steps": steps, "tol": TOL, "method": "adam-lm"},
                                  "seconds": time.perf_counter() - t0, "versions": versions()})
    return flips, thresholds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
