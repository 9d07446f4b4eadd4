"""The sharp law: where the training set becomes identifiable, how sharply, and as d*n grows.

    jaxrecon sweep experiments/sharp_law.py --out runs/sharp_law            # ~20 min on 2 CPU cores

Random-features regression (ReLU) on n points of the sphere of radius sqrt(d), 20 seeds per grid
point, p/(dn) from 0.5 to 2, densest around the counting prediction p = d n (theta in the span of
Phi(X_hat) is p - n equations for n (d - 1) unknowns on the sphere). The grid is a product d x n,
so the four curves are a 2 x 2 factorial: (d, n) = (10, 5), (10, 20), (100, 5), (100, 20), i.e.
d*n = 50, 200, 500, 2000, which also separates a dependence on d from one on n.

The attack starts *planted*: at X + 0.1 N(0, I) (rows back on the sphere), so that reaching a
zero of the loss is easy at every p and the question is only whether the zero it reaches is X.
Below p = dn the zeros around X form a manifold (solved, not identified); above it X is an
isolated zero (identified). This measures local identifiability, the law itself, separately from
the optimiser: ``experiments/solve_rate.py`` measures how often the attack reaches a zero from
random starts (the algorithmic side).

Every seed reports `solved` and `identified` (error_sign <= 1e-3); thresholds.csv gives per
(d, n) the 1/2 crossing of a logistic fit of P(identified) in log p, p*/(dn), and the transition
width, each with a 95 % bootstrap interval over seeds; law.png shows P(solved) and
P(identified | solved) against p/(dn), finite_size.png the threshold and width against d*n.
Results of a run are in benchmarks/results/sharp_law/.
"""

from jaxrecon.sweeps import SweepConfig

#: The attack (its first phase starts at the planted point).
METHOD = "adam-lm"
#: Start at X + PLANTED * N(0, I).
PLANTED = 0.1
#: (d, n): the grid is their product (see the module docstring).
D = [10, 100]
N = [5, 20]
P_OVER_DN = [0.5, 0.75, 0.9, 1, 1.1, 1.25, 1.5, 2]
SEEDS = 20


def get_config() -> SweepConfig:
    return SweepConfig(
        name="sharp_law",
        grid=dict(d=D, n=N, p_over_dn=P_OVER_DN, activation=["relu"], method=[METHOD]),
        attack=dict(seeds=SEEDS, seed=0, steps=1500, planted=PLANTED),
    )
