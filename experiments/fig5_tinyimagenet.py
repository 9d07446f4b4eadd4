"""Paper Fig. 5: reconstruction of higher-dimensional images (Tiny-ImageNet, n = 20, p = 10 d n).

Full size, the paper's (the default)::

    python experiments/fig5_tinyimagenet.py [--data-dir DIR]

Tiny-ImageNet-200 when DIR (or ``$JAXRECON_DATA``) holds it, the bundled 64x64 photographs
(``photos64``) otherwise: n = 20, d = 64*64*3 = 12288, p = 10 d n = 2,457,600 (V is 121 GB in
float32: it is streamed, by ``--memory-budget`` or ``--block-size``, or by the runner's memory
policy when neither is given), 2 attack seeds of Adam for 4000 steps. Expected time on one
H100/H200: one step is 2-3 passes over V, ``n d p = 6.0e11`` multiply-adds each, so about
0.05-0.1 s per step in TF32 and 4000 steps in 5-10 minutes per seed (an estimate from the pass
count, not measured); on a 2-core CPU about 10 minutes per step: use ``--quick``.

Quick (CPU, bundled 16x16 photographs, n = 6, p = 10 d n, Adam; about 5 minutes on 2 cores)::

    python experiments/fig5_tinyimagenet.py --quick

The configuration is :func:`get_config` (a :class:`~jaxrecon.runner.ReconstructConfig`); the same run
from the command line::

    jaxrecon reconstruct --data tinyimagenet --data-dir DIR --n 20 --seeds 2 --method adam --steps 4000 \
        --p-over-dn 10 --out runs/fig5

Writes ``recon.png`` (odd rows truth, even rows matched reconstructions) and ``summary.json`` into
``--out`` (default ``benchmarks/results/fig5_full``, ``fig5_quick`` with ``--quick``).
"""

from __future__ import annotations

import os
import sys

from jaxrecon.runner import ReconstructConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fig1_cifar import STAND_IN, has_dataset, parser, run_point, sized  # noqa: E402

#: The figure's run: 20 Tiny-ImageNet images, 2 attack seeds of Adam, p = 10 d n.
FIG5 = dict(data="tinyimagenet", n=20, seeds=2, method="adam", steps=4000)
#: ``--quick``: bundled 16x16 photographs, 6 images, one seed.
QUICK = dict(data="photos16", n=6, seeds=1, steps=2000, ratio=10.0)


def get_config(ratio: float = 10.0, **overrides) -> ReconstructConfig:
    """The figure's run at ``p = ratio * d n`` (flat or sectioned overrides)."""
    return ReconstructConfig(**{**FIG5, "p_over_dn": ratio, **overrides})


def arguments(argv=None):
    """The parsed flags with the sizes filled in (the paper's, or ``--quick``'s) and the dataset chosen."""
    a = parser(method=FIG5["method"])
    a.add_argument("--ratio", type=float, default=None, help="p / (d n) (default 10)")
    args = a.parse_args(argv)
    if args.data is None and not args.quick:
        args.data = FIG5["data"] if has_dataset(FIG5["data"], args.data_dir) else STAND_IN[FIG5["data"]]
        if args.data != FIG5["data"]:
            print(f"{FIG5['data']} not found (--data-dir / $JAXRECON_DATA): using the bundled {args.data}")
    return sized(args, {**FIG5, "ratio": 10.0}, QUICK, "fig5")


def main(argv=None):
    args = arguments(argv)
    s = run_point(args, args.ratio, args.out, config=get_config)
    print(f"wrote {args.out}/recon.png; error_sign per seed {[r['error_sign'] for r in s['results']]}")


if __name__ == "__main__":
    main()
