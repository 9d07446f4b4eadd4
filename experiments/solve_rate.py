"""How often the attack reaches a zero of the projector loss from random starts, at every p.

    jaxrecon sweep experiments/solve_rate.py --out runs/solve_rate                  # (d, n) = (25, 6)
    jaxrecon sweep experiments/solve_rate.py --d 50 --n 10 --out runs/solve_rate_50  # the larger case

The training set X always gives L(X) = 0, so a zero exists at every p; reaching one is the
optimiser's part of the law (``experiments/sharp_law.py`` measures the identification part from
planted starts). Compares the default ``adam-lm`` (one start per seed) with ``global`` (a
population of 8 starts per seed, stopping when one converges), 20 seeds per point, p/(dn) in
{0.5, 0.75, 1, 1.25, 1.5, 2, 3}. results.csv has per seed `solved` (L <= 1e-10) and `identified`
(error_sign <= 1e-3); law.png shows P(solved) and P(identified | solved). Results of a run are
in benchmarks/results/solve_rate/.
"""

from jaxrecon.sweeps import SweepConfig


def get_config() -> SweepConfig:
    return SweepConfig(
        name="solve_rate",
        grid=dict(d=[25], n=[6], p_over_dn=[0.5, 0.75, 1, 1.25, 1.5, 2, 3], activation=["relu"],
                  method=["adam-lm", "global"]),
        attack=dict(seeds=20, seed=0, steps=3000),
    )
