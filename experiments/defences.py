"""Defences against the attack: error against p/(dn) per defence strength (issue "For privacy researchers").

    jaxrecon sweep experiments/defences.py --out runs/defences              # theta noise (main sweep)
    jaxrecon sweep experiments/defences.py --defence dp --defence-strength 0.5,2,8 --seeds 2 --out runs/dp
    python experiments/defences.py OUT [KIND ...]                           # sweeps + one figure each
    python experiments/defences.py benchmarks/results/defences dp quantize prune ridge early_stop

Random-features regression (ReLU), d = 25, n = 6, p/(dn) in {1, 2, 5, 10}, 8 seeds; the released
theta carries Gaussian noise of relative size EPS (|noise| = EPS |theta|) at 5 strengths. The attack
stops at the noise floor or on a plateau (status ``floor`` / ``plateau``), never at an unreachable
tolerance. The figure (:func:`jaxrecon.privacy_plots.defence_figure`) shows the error per strength
and the strength needed to keep the error above 0.1; ``utility.csv`` (:func:`utility`) what each
strength costs the model. The other kinds (``OTHER``) run 2 seeds at 3 strengths (2 for quantize).
"""

import sys

from jaxrecon.sweeps import SweepConfig

#: Strengths of the smaller sweeps of the other defences (their ``defence_strength`` axis).
OTHER = {
    "dp": [0.5, 2.0, 8.0],  # epsilon (delta 1e-5)
    "quantize": [16, 8],  # bfloat16, int8
    "prune": [0.1, 0.5, 0.9],  # fraction zeroed
    "ridge": [1e-2, 1.0, 1e2],  # lambda
    "early_stop": [10, 100, 1000],  # GD steps
}


def get_config(kind: str = "theta_noise") -> SweepConfig:
    strengths = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1] if kind == "theta_noise" else OTHER[kind]
    return SweepConfig(
        name=f"defences_{kind}",
        grid=dict(d=[25], n=[6], p_over_dn=[1, 2, 5, 10], activation=["relu"], method=["adam-lm"]),
        attack=dict(seeds=8 if kind == "theta_noise" else 2, seed=0, steps=3000),
        privacy=dict(defence=kind, defence_strength=strengths),
    )


def utility(kind: str, path) -> None:
    """What the defence costs the model, without attacking: per p/(dn), seed and strength, the
    released theta's distance from the clean fit relative to it (``noise_norm / theta_norm``) and its
    training MSE (``train_loss``), written to ``path`` (csv). The data and features of each seed are
    the sweep's (same keys); the defence's noise is drawn unpadded, so it is not the sweep's draw."""
    import csv

    import jax

    from jaxrecon.data.synthetic import synthetic
    from jaxrecon.defences import defence_at, defend
    from jaxrecon.features.random_features import RandomFeatures
    from jaxrecon.sweeps import seed_keys

    r = get_config(kind).resolved()
    rows = []
    for s, key in enumerate(seed_keys(r.seed, r.seeds)):
        k_data, k_model, k_attack = jax.random.split(key, 3)
        data = synthetic(k_data, r.n[0], r.d[0], r.noise)
        for ratio in r.p_over_dn:
            p = max(1, int(round(ratio * r.d[0] * r.n[0])))
            fmap = RandomFeatures(k_model, r.d[0], p, r.activation[0])
            for level in r.defence_strength:
                spec = defence_at(kind, level, r.dp_delta)
                info = defend(fmap, data.x, data.y, spec, jax.random.fold_in(k_attack, 2)).info
                rows.append([ratio, s, level, float(info["noise_norm"] / info["theta_norm"]),
                             float(info["train_loss"])])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["p_over_dn", "seed", "defence_strength", "relative_change", "release_train_loss"])
        w.writerows(rows)


if __name__ == "__main__":
    from pathlib import Path

    from jaxrecon.privacy_plots import defence_figure, write_summary
    from jaxrecon.sweeps import sweep

    out = Path(sys.argv[1])
    for kind in sys.argv[2:] or ["theta_noise"]:
        table = sweep(get_config(kind), out=out / kind, plots=False, progress=False, bootstrap=0)
        defence_figure(table, out / kind / f"{kind}.png")
        write_summary(table, out / kind / "summary.json")
        utility(kind, out / kind / "utility.csv")
