"""The sharp law: how sharp the identification threshold is, and where it goes as d*n grows.

    jaxrecon sweep experiments/sharp_law.py --out runs/sharp_law

Random-features regression (ReLU) on n points of the sphere of radius sqrt(d), 20 seeds per grid
point, p/(dn) in {0.5, 0.75, 1, 1.25, 1.5, 2, 3} around the counting prediction p = d n (p - n
equations for n (d - 1) unknowns on the sphere). The grid is a product d x n, so the four curves
are a 2 x 2 factorial: (d, n) = (10, 5), (10, 20), (100, 5), (100, 20), i.e. d*n = 50, 200, 500,
2000, which also separates a dependence on d from one on n.

Every seed reports `solved` (the attack reached a zero of the loss) and `identified` (that zero is
the training set, error_sign <= 1e-3). thresholds.csv gives per (d, n) the 1/2 crossing of a
logistic fit of P(identified) in log p, p*/(dn), and the transition width s, each with a 95 %
bootstrap interval over seeds; law.png shows P(solved) and P(identified | solved) against p/(dn),
finite_size.png the threshold and the width against d*n. A threshold above 1 means little where
P(solved) is low near it: read it together with P(solved).
"""

from jaxrecon.sweeps import SweepConfig

#: The attack. The library default for now; a solver that reaches L = 0 near the threshold
#: replaces it here.
METHOD = "adam-lm"
#: (d, n): the grid is their product (see the module docstring).
D = [10, 100]
N = [5, 20]
P_OVER_DN = [0.5, 0.75, 1, 1.25, 1.5, 2, 3]
SEEDS = 20


def get_config() -> SweepConfig:
    return SweepConfig(
        name="sharp_law",
        grid=dict(d=D, n=N, p_over_dn=P_OVER_DN, activation=["relu"], method=[METHOD]),
        attack=dict(seeds=SEEDS, seed=0, steps=4000),
    )
