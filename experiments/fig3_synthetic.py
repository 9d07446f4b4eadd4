"""Paper Fig. 3: thresholds for label fitting (p ~ n) and reconstruction (p ~ d n) on sphere data.

    jaxrecon sweep experiments/fig3_synthetic.py --out runs/fig3

ReLU random features, noisy linear labels, 10 seeds per point, several (d, n). Hours on a CPU;
minutes on a GPU. Shrink it from the command line, e.g. ``--d 25 --n 10 --seeds 4``.
"""

from jaxrecon.sweeps import SweepConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="fig3_synthetic",
        grid=dict(
            d=[25, 50, 100],
            n=[10, 20],
            p_over_dn=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10],
            activation=["relu"],
            method=None,  # the library default (jaxrecon.DEFAULT_METHOD)
        ),
        attack=dict(seeds=10, seed=0, steps=20000),
    )
