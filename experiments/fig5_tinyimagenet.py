"""Paper Fig. 5: reconstruction of higher-dimensional images (Tiny-ImageNet, n = 20, p = 10 d n).

Full size (GPU; Tiny-ImageNet-200 extracted in DIR): d = 64*64*3 = 12288, p = 2,457,600, so V is
streamed (``--block-size``); ``--image-size 32`` gives d = 3072 instead::

    python experiments/fig5_tinyimagenet.py --data tinyimagenet --data-dir DIR --n 20 --seeds 2 \
        --block-size 65536 --out runs/fig5

Reduced size (CPU, bundled 32x32 or 64x64 photo patches)::

    python experiments/fig5_tinyimagenet.py --data photos32 --n 10 --seeds 1 --steps 4000 --out runs/fig5_photos

The configuration is :func:`get_config` (a :class:`~jaxrecon.runner.ReconstructConfig`); the same run
from the command line::

    jaxrecon reconstruct --data tinyimagenet --data-dir DIR --n 20 --seeds 2 --method adam --steps 4000 \
        --p-over-dn 10 --block-size 65536 --out runs/fig5

Writes ``recon.png`` (odd rows truth, even rows matched reconstructions) and ``summary.json``.
"""

from __future__ import annotations

import os
import sys

from jaxrecon.runner import ReconstructConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fig1_cifar import parser, run_point  # noqa: E402

#: The figure's run: 20 Tiny-ImageNet images, 2 attack seeds of Adam, p = 10 d n.
FIG5 = dict(data="tinyimagenet", n=20, seeds=2, method="adam", steps=4000)


def get_config(ratio: float = 10.0, **overrides) -> ReconstructConfig:
    """The figure's run at ``p = ratio * d n`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**FIG5, "p_over_dn": ratio, **overrides})


def main(argv=None):
    a = parser(**FIG5, out="runs/fig5")
    a.add_argument("--ratio", type=float, default=10.0)
    args = a.parse_args(argv)
    s = run_point(args, args.ratio, args.out, config=get_config)
    print(f"wrote {args.out}/recon.png; error_sign per seed {[r['error_sign'] for r in s['results']]}")


if __name__ == "__main__":
    main()
