"""Defences against the attack: error against p/(dn) per defence strength (issue "For privacy researchers").

    jaxrecon sweep experiments/defences.py --out runs/defences              # theta noise (main sweep)
    jaxrecon sweep experiments/defences.py --defence dp --defence-strength 0.5,2,8 --seeds 2 --out runs/dp
    python experiments/defences.py OUT [KIND ...]                           # sweeps + one figure each

Random-features regression (ReLU), d = 25, n = 6, p/(dn) in {1, 2, 5, 10}, 8 seeds; the released
theta carries Gaussian noise of relative size EPS (|noise| = EPS |theta|) at 5 strengths. The attack
stops at the noise floor or on a plateau (status ``floor`` / ``plateau``), never at an unreachable
tolerance. The figure (:func:`jaxrecon.privacy_plots.defence_figure`) shows the error per strength
and the strength needed to keep the error above 0.1.
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


if __name__ == "__main__":
    from pathlib import Path

    from jaxrecon.privacy_plots import defence_figure, write_summary
    from jaxrecon.sweeps import sweep

    out = Path(sys.argv[1])
    for kind in sys.argv[2:] or ["theta_noise"]:
        table = sweep(get_config(kind), out=out / kind, plots=False, progress=False, bootstrap=0)
        defence_figure(table, out / kind / f"{kind}.png")
        write_summary(table, out / kind / "summary.json")
