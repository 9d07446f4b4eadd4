"""Paper Fig. 4: ReLU reconstructions can come back sign-flipped (-x); ReLU+tanh ones do not.

ReLU's odd Hermite coefficients of order >= 3 vanish, so x and -x can have the same feature span
(paper Remark 1); ``relu_tanh`` breaks the symmetry. For each activation this runs the attack at
p = r d n over several attack seeds and writes ``<activation>/recon.png`` twice: with flipped
matches framed in red and shown multiplied by -1 (``recon.png``), and as returned by the attack
(``recon_raw.png``: flipped ones look like photographic negatives, as in the paper's figure).

Full size (paper; GPU)::

    python experiments/fig4_sign.py --data cifar10 --data-dir DIR --n 100 --ratio 10 --seeds 4 \
        --block-size 65536 --out runs/fig4

Reduced size (CPU, bundled images)::

    python experiments/fig4_sign.py --data photos16 --n 10 --ratio 10 --seeds 2 --steps 2000 --out runs/fig4_photos

The configuration of one activation's run is :func:`get_config` (a
:class:`~jaxrecon.runner.ReconstructConfig`); the same run from the command line::

    jaxrecon reconstruct --data cifar10 --data-dir DIR --n 100 --p-over-dn 10 --seeds 4 --method adam \
        --steps 4000 --activation relu_tanh --block-size 65536 --out runs/fig4/relu_tanh
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fig1_cifar import parser, run_point  # noqa: E402
from jaxrecon.runner import ReconstructConfig  # noqa: E402

#: The figure's runs: 100 CIFAR-10 images, Adam, p = 10 d n, one run per activation.
FIG4 = dict(data="cifar10", n=100, seeds=4, method="adam", steps=4000)


def get_config(ratio: float = 10.0, activation: str = "relu", **overrides) -> ReconstructConfig:
    """One activation's run at ``p = ratio * d n`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**FIG4, "p_over_dn": ratio, "activation": activation, **overrides})


def main(argv=None):
    a = parser(**FIG4, out="runs/fig4")
    a.add_argument("--ratio", type=float, default=10.0)
    a.add_argument("--activations", default="relu,relu_tanh")
    args = a.parse_args(argv)
    from jaxrecon.data.registry import load_dataset  # noqa: F401  (fail early on a bad --data)
    import jax
    import jaxrecon as jr
    from jaxrecon.image_plots import save_recon
    from jaxrecon.runner import load_data

    for act in args.activations.split(","):
        out = os.path.join(args.out, act)
        s = run_point(args, args.ratio, out, activation=act, config=get_config)
        flips = [row["flipped"] for row in s["results"]]
        print(f"{act}: flipped matches per seed {flips}, error_sign {[round(r['error_sign'], 4) for r in s['results']]}")
        # the raw figure: reload the data the run used and its reconstructions
        cfg = ReconstructConfig(**{k: v for k, v in s["config"].items()})
        data = load_data(cfg, jax.random.split(jax.random.key(cfg.seed), 3)[0])
        x_hat = np.load(os.path.join(out, "arrays.npz"))["x_hat"]
        best = s["images"]["figure_seed"]
        save_recon(data, x_hat[best], jr.match(data.x, x_hat[best]), os.path.join(out, "recon_raw.png"),
                   unflip=False, title=f"{act}: as returned (flipped matches are negatives)")


if __name__ == "__main__":
    main()
