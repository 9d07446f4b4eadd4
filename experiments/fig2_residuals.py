"""Paper Fig. 2: reconstruction error and span residual |P_perp phi(x_i)| / sqrt(p) vs p.

    jaxrecon sweep experiments/fig2_residuals.py --out runs/fig2

d = 100, n = 20 (the setup of the paper's Figs. 1 and 2, on sphere data), 10 seeds. The figure to
read is residuals.png: once the attack recovers the data, the training features lie in the span
of the reconstructed ones (residual ~ 0), and not before. Shrink it from the command line, e.g.
``--d 20 --n 5 --attack.seeds 4``.
"""

from jaxrecon.sweeps import SweepConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="fig2_residuals",
        grid=dict(
            d=[100],
            n=[20],
            p_over_dn=[0.25, 0.5, 1, 1.5, 2, 3, 5, 10],
            activation=["relu"],
            method=None,  # the library default (jaxrecon.DEFAULT_METHOD)
        ),
        attack=dict(seeds=10, seed=0, steps=20000),
    )
