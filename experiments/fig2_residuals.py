"""Paper Fig. 2: reconstruction error and span residual |P_perp phi(x_i)| / sqrt(p) vs p.

    jaxrecon sweep experiments/fig2_residuals.py --out runs/fig2

d = 100, n = 20 (the setup of the paper's Figs. 1 and 2, on sphere data), 10 seeds. The figure to
read is residuals.png: once the attack recovers the data, the training features lie in the span
of the reconstructed ones (residual ~ 0), and not before.
"""


def get_config():
    return {
        "name": "fig2_residuals",
        "d": [100],
        "n": [20],
        "p_over_dn": [0.25, 0.5, 1, 1.5, 2, 3, 5, 10],
        "activation": ["relu"],
        "method": None,  # the library default (jaxrecon.DEFAULT_METHOD)
        "seeds": 10,
        "seed": 0,
        "steps": 20000,
    }
