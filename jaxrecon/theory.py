"""What the activation and the counting argument predict, before any attack is run.

**Hermite coefficients.** Every registered activation has the expansion
``sigma(z) = sum_k c_k He_k(z) / sqrt(k!)`` in the probabilists' Hermite polynomials ``He_k``
(``He_0 = 1, He_1 = z, He_2 = z^2 - 1``, orthogonal under ``N(0, 1)`` with ``E[He_k^2] = k!``), so

    c_k = E[sigma(G) He_k(G)] / sqrt(k!),   G ~ N(0, 1).

This is the natural scale here: a random feature ``v . x`` with ``v ~ N(0, I/d)`` and ``||x|| = sqrt(d)``
is exactly ``N(0, 1)``, and by Mehler's formula the random-features kernel of two training points is
``E_v[sigma(v.x) sigma(v.y)] = sum_k c_k^2 rho^k`` with ``rho = x.y / d``. Parseval gives
``sum_k c_k^2 = E[sigma(G)^2]``.

**Symmetry class** (paper Remark 1, Fig. 4). Write ``phi(x) = sigma(V x)`` for the feature vector.

* ``"odd"``: ``sigma(-z) = -sigma(z)`` (all even-order ``c_k`` vanish; tanh, erf). Then
  ``phi(-x) = -phi(x)``: ``x`` and ``-x`` give the same span, so every row of the training set is
  identifiable only up to its sign -- an exact symmetry of the attack's loss.
* ``"even"``: ``sigma(-z) = sigma(z)`` (all odd-order ``c_k`` vanish): ``phi(-x) = phi(x)``, exact too.
* ``"relu-like"``: odd coefficients of order ``>= 3`` vanish but ``c_1 != 0`` (relu, gelu): the odd
  part of ``sigma`` is the line ``c_1 z``, so ``phi(-x) = phi(x) - 2 c_1 V x``. A flipped row changes
  its features only by a linear feature, which lies in the ``d``-dimensional range of ``V`` (and the
  kernel only by ``-2 c_1^2 rho``). Not an exact symmetry, but sign-flipped rows are near-minima,
  and an antipodal pair of rows ``z, -z`` (features differing by ``2 c_1 V z``) can supply the
  missing linear part: sign flips are possible.
* ``"none"``: anything else (relu_tanh: its odd part ``z/2 + tanh z`` is not linear). Signs are
  identified.

The class is decided from ``c_0 .. c_K`` (``K = SYMMETRY_ORDER``): a coefficient counts as zero when
``|c_k| <= tol * sqrt(sum_j c_j^2)``. The quadrature is accurate to ~1e-12, so ``tol = 1e-6`` is far
above numerical noise and far below the smallest coefficient that breaks a symmetry among the
registered activations (relu_tanh: ``|c_3| ~ 0.1``). A finite ``K`` cannot see a symmetry-breaking
coefficient of order above ``K``.

**Thresholds** for ``n`` training points in ``R^d`` and ``p`` features. The parameters satisfy
``theta = Phi^T alpha`` (``Phi`` the ``n x p`` feature matrix), i.e. ``theta`` lies in an ``n``-dimensional
subspace of ``R^p``: for a candidate ``X_hat`` that is ``p - n`` equations. The unknowns are ``n``
points on the sphere, ``n (d - 1)`` numbers. Generic solutions are isolated (the training set is
identified) once ``p - n >= n (d - 1)``, i.e. at the *counting threshold* ``p* = d n`` (the same
count as ``p`` equations ``theta = Phi_hat^T alpha`` in ``n d`` unknowns ``X_hat, alpha``). Rows free
to leave the sphere would add ``n`` unknowns (``p* = n (d + 1)``) unless ``sigma`` is positively
homogeneous, as relu is, where the row norms are not identified at all. The model interpolates
its ``n`` labels once ``p >= n``: the *label-fitting threshold*.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from functools import lru_cache

import numpy as np

from .activations import ACTIVATIONS, ActivationSpec, activation_name, get_activation

#: Default highest Hermite order reported (``c_0 .. c_8``).
DEFAULT_ORDER = 8
#: Highest order used to decide the symmetry class.
SYMMETRY_ORDER = 16
#: Relative tolerance below which a coefficient counts as zero for the symmetry class.
SYMMETRY_TOL = 1e-6
SYMMETRY_CLASSES = ("odd", "even", "relu-like", "none")

_SIGN_AMBIGUITY = {
    "odd": "exact: x and -x give the same feature span (phi(-x) = -phi(x)); rows are identified up to sign",
    "even": "exact: x and -x give the same features (phi(-x) = phi(x)); rows are identified up to sign",
    "relu-like": "possible: flipping a row changes its features by a linear feature -2 c_1 V x only; "
                 "sign-flipped rows are near-minima (paper Remark 1)",
    "none": "none predicted: the odd part of sigma is nonlinear, so signs are identified",
}

# Composite Gauss-Legendre rule: nodes per panel and panel width. Panels never straddle a
# breakpoint, so a kink there costs no accuracy; the integrand is entire (or analytic in a strip,
# tanh) on each panel, where 32 nodes on width 1 converge to machine precision.
_NODES_PER_PANEL = 32
_PANEL_WIDTH = 1.0


@lru_cache(maxsize=None)
def _gauss_legendre(m: int):
    return np.polynomial.legendre.leggauss(m)


def _quadrature_rule(order: int, breakpoints) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[f(G)]``, ``G ~ N(0, 1)``: composite Gauss-Legendre on ``[-L, L]``.

    ``L = 12 + 2 sqrt(order + 1)`` makes the neglected tails ``|x|^order exp(-x^2 / 2)`` negligible
    (below 1e-40) for orders up to 200; the interval is split at ``breakpoints``.
    """
    half = 12.0 + 2.0 * math.sqrt(order + 1)
    cuts = sorted({-half, half, *(float(b) for b in breakpoints if -half < b < half)})
    t, w = _gauss_legendre(_NODES_PER_PANEL)
    nodes, weights = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        panels = max(1, math.ceil((b - a) / _PANEL_WIDTH))
        edges = np.linspace(a, b, panels + 1)
        mid, rad = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
        nodes.append((mid[:, None] + rad[:, None] * t).ravel())
        weights.append((rad[:, None] * w).ravel())
    x, w = np.concatenate(nodes), np.concatenate(weights)
    return x, w * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def normalized_hermite(x: np.ndarray, order: int) -> np.ndarray:
    """``He_k(x) / sqrt(k!)`` for ``k = 0..order``, shape ``(order + 1, len(x))``.

    The orthonormal three-term recurrence ``h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1)``
    never forms ``k!`` or ``He_k`` itself, so it does not overflow at high order.
    """
    x = np.asarray(x, np.float64)
    h = np.empty((order + 1,) + x.shape)
    h[0] = 1.0
    if order >= 1:
        h[1] = x
    for k in range(1, order):
        h[k + 1] = (x * h[k] - math.sqrt(k) * h[k - 1]) / math.sqrt(k + 1)
    return h


def _evaluate(activation: ActivationSpec, x: np.ndarray) -> np.ndarray:
    """``sigma(x)`` in float64: JAX activations run under x64 so the 1e-8 target is reachable."""
    import jax

    fn = get_activation(activation)
    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # JAX releases before the top-level context manager
        from jax.experimental import enable_x64
    with enable_x64(True):
        y = np.asarray(fn(jax.numpy.asarray(x, dtype=np.float64)), dtype=np.float64)
    if y.shape != x.shape or not np.all(np.isfinite(y)):
        raise ValueError(f"activation: {activation_name(activation)} must map a vector elementwise to "
                         "finite values on the real line")
    return y


def gaussian_moment(activation: ActivationSpec, power: int = 2, breakpoints=(0.0,)) -> float:
    """``E[sigma(G)^power]``, ``G ~ N(0, 1)``, with the quadrature of :func:`hermite_coefficients`."""
    x, w = _quadrature_rule(power, breakpoints)
    return float(np.dot(w, _evaluate(activation, x) ** power))


def hermite_coefficients(activation: ActivationSpec, order: int = DEFAULT_ORDER,
                         breakpoints=(0.0,)) -> np.ndarray:
    """``c_k = E[sigma(G) He_k(G)] / sqrt(k!)`` for ``k = 0..order``, float64, shape ``(order + 1,)``.

    Composite Gauss-Legendre quadrature against the Gaussian density on ``[-L, L]``, split at
    ``breakpoints``: a kink of ``sigma`` at a breakpoint (relu's at 0) is integrated as exactly as a
    smooth function, so one rule serves registered names and arbitrary callables. Tested within
    1e-12 of the closed forms of relu, erf and gelu (orders 0..20) and 1e-10 of Gauss-Hermite
    quadrature for the smooth ones. Kinks away from the breakpoints converge only algebraically.

    Args:
      activation: a registered name (see :data:`jaxrecon.activations.ACTIVATIONS`) or a callable.
      order: highest order ``K``.
      breakpoints: points where ``sigma`` may be non-smooth.
    """
    _check_order(order)
    x, w = _quadrature_rule(int(order), breakpoints)
    return normalized_hermite(x, int(order)) @ (w * _evaluate(activation, x))


def _check_order(order):
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 200:
        raise ValueError(f"order: must be an integer in [0, 200], got {order!r}")


def classify_symmetry(coeffs, tol: float = SYMMETRY_TOL) -> str:
    """The symmetry class (``"odd"``, ``"even"``, ``"relu-like"`` or ``"none"``) of normalised Hermite
    coefficients ``c_0 .. c_K``; see the module docstring for what each class implies.

    ``c_k`` counts as zero when ``|c_k| <= tol * sqrt(sum_j c_j^2)``. Checked in this order: odd (all
    even orders zero), even (all odd orders zero), relu-like (odd orders ``>= 3`` zero, ``c_1`` not),
    none. A linear ``sigma`` is therefore odd.
    """
    c = np.asarray(coeffs, np.float64)
    if c.ndim != 1 or c.size < 4:
        raise ValueError(f"coeffs: must be a vector c_0..c_K with K >= 3, got shape {c.shape}")
    if not tol >= 0:
        raise ValueError(f"tol: must be >= 0, got {tol!r}")
    zero = np.abs(c) <= tol * float(np.linalg.norm(c))
    if zero[0::2].all():
        return "odd"
    if zero[1::2].all():
        return "even"
    if zero[3::2].all():
        return "relu-like"
    return "none"


def counting_threshold(d: int, n: int) -> int:
    """``p* = d n``: ``p - n`` span equations in ``n (d - 1)`` sphere unknowns (module docstring)."""
    _check_dims(d, n)
    return int(d) * int(n)


def label_threshold(n: int) -> int:
    """``p = n``: the least number of features with which the fit interpolates ``n`` labels."""
    _check_dims(1, n)
    return int(n)


#: Fraction of recovered rows that come out as ``-x_i``, per symmetry class: the interval the
#: class allows. Odd and even: ``x_i -> -x_i`` is an exact symmetry of the loss, of a start drawn
#: symmetrically (uniform on the sphere) and of the attack's steps (Adam and LM are sign-equivariant
#: per row), so each recovered row is flipped with probability exactly 1/2. ReLU-like: a flipped
#: row is a near-minimum, not a zero; the class allows flips without predicting their rate. None:
#: no flips.
FLIP_RATE = {"odd": (0.5, 0.5), "even": (0.5, 0.5), "relu-like": (0.0, 1.0), "none": (0.0, 0.0)}


def flip_check(symmetry: str, flipped: int, recovered: int, level: float = 0.99) -> dict:
    """Compare a measured sign-flip count with :data:`FLIP_RATE` for a symmetry class.

    ``flipped`` of ``recovered`` rows came out as ``-x_i``. Returns ``rate``, its two-sided
    Clopper-Pearson interval ``lo``, ``hi`` at ``level``, the predicted interval ``predicted_lo``,
    ``predicted_hi``, and ``consistent``: the measured interval meets the predicted one (with no
    recovered rows there is nothing to check: ``consistent`` is ``None``)."""
    from scipy.stats import beta

    if symmetry not in FLIP_RATE:
        raise ValueError(f"symmetry: must be one of {list(FLIP_RATE)}, got {symmetry!r}")
    flipped, recovered = int(flipped), int(recovered)
    if not 0 <= flipped <= recovered:
        raise ValueError(f"flipped: must be in [0, recovered={recovered}], got {flipped}")
    if not 0 < level < 1:
        raise ValueError(f"level: must be in (0, 1), got {level!r}")
    plo, phi = FLIP_RATE[symmetry]
    out = {"rate": math.nan, "lo": 0.0, "hi": 1.0, "predicted_lo": plo, "predicted_hi": phi, "consistent": None}
    if recovered == 0:
        return out
    a = (1 - level) / 2
    lo = 0.0 if flipped == 0 else float(beta.ppf(a, flipped, recovered - flipped + 1))
    hi = 1.0 if flipped == recovered else float(beta.ppf(1 - a, flipped + 1, recovered - flipped))
    out.update(rate=flipped / recovered, lo=lo, hi=hi, consistent=bool(lo <= phi and plo <= hi))
    return out


def _check_dims(d, n):
    for name, v in (("d", d), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: must be a positive integer, got {v!r}")


def summary(activation: ActivationSpec, d: int | None = None, n: int | None = None,
            order: int = DEFAULT_ORDER, tol: float = SYMMETRY_TOL) -> dict:
    """Everything :mod:`jaxrecon.theory` predicts for an activation (and a problem size), JSON-ready.

    Keys: ``activation``, ``hermite`` (``c_0 .. c_order``), ``second_moment`` (``E[sigma(G)^2]``),
    ``symmetry`` (decided from orders up to ``max(order, SYMMETRY_ORDER)``), ``symmetry_tol``,
    ``sign_ambiguity`` (what the class predicts for the attack); with ``d`` and ``n`` also ``d``,
    ``n``, ``counting_threshold`` (``d n``) and ``label_threshold`` (``n``).
    """
    if (d is None) != (n is None):
        raise ValueError("d, n: give both or neither")
    _check_order(order)
    coeffs = hermite_coefficients(activation, max(order, SYMMETRY_ORDER))
    symmetry = classify_symmetry(coeffs, tol)
    out = {
        "activation": activation_name(activation),
        "hermite": [float(c) for c in coeffs[: order + 1]],
        "second_moment": gaussian_moment(activation, 2),
        "symmetry": symmetry,
        "symmetry_tol": float(tol),
        "sign_ambiguity": _SIGN_AMBIGUITY[symmetry],
    }
    if d is not None:
        out.update(d=int(d), n=int(n), counting_threshold=counting_threshold(d, n),
                   label_threshold=label_threshold(n))
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``theory`` command to a ``jaxrecon`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "theory", help="Hermite coefficients, symmetry class and thresholds of an activation",
        description="Predictions from the activation alone: its normalised Hermite coefficients "
                    "c_k = E[sigma(G) He_k(G)]/sqrt(k!), its sign-symmetry class (paper Remark 1), and "
                    "for given d, n the counting threshold p* = d n and the label-fitting threshold p = n.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_arguments(p)
    return p


def _add_arguments(p):
    p.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS), help="activation")
    p.add_argument("--d", type=int, default=None, help="input dimension (with --n: thresholds)")
    p.add_argument("--n", type=int, default=None, help="number of training samples (with --d)")
    p.add_argument("--order", type=int, default=DEFAULT_ORDER, help="highest Hermite order shown")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def _format(s: dict) -> str:
    lines = [f"activation {s['activation']}: E[sigma(G)^2] = {s['second_moment']:.10g}",
             "  k   c_k = E[sigma(G) He_k(G)] / sqrt(k!)"]
    lines += [f"{k:3d}   {c: .12f}" for k, c in enumerate(s["hermite"])]
    lines.append(f"symmetry: {s['symmetry']}; sign ambiguity {s['sign_ambiguity']}")
    if "d" in s:
        lines.append(f"d = {s['d']}, n = {s['n']}: counting threshold p* = d n = {s['counting_threshold']}, "
                     f"label-fitting threshold p = n = {s['label_threshold']}")
    return "\n".join(lines)


def run(args) -> int:
    """Run the ``theory`` command on parsed arguments (from :func:`add_parser`)."""
    s = summary(args.activation, d=args.d, n=args.n, order=args.order)
    print(json.dumps(s, indent=2) if args.json else _format(s))
    return 0


def main(argv=None) -> int:
    """``jaxrecon theory [--activation A] [--d D --n N] [--order K] [--json]`` as a function."""
    parser = argparse.ArgumentParser(prog="jaxrecon theory")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as e:
        print(f"jaxrecon: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
