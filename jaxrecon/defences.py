"""Defences against the reconstruction attack: what a model owner can do to ``theta`` before release.

::

    d = Defence(kind="theta_noise", strength=1e-2)      # relative Gaussian noise on theta
    model = defend(fmap, x, y, d, key)                   # Defended(target, info)
    reconstruct(model.target, k_attack, n)               # stops at the floor / on a plateau

:func:`defend` fits the model the way the defence says and releases ``theta``; everything is a pure
``jnp`` function of its arguments (jit- and vmap-compatible). The :class:`Defence` is static; its
numbers (:class:`Levels`: the strength, and ``sigma / Delta`` of the Gaussian mechanism for ``dp``)
may be passed to :func:`defend` as traced values, so that one compiled program serves every
strength of a kind (:data:`TRACED`; ``quantize`` compiles one program per dtype).

===============  ==========================================================  ===============
kind             released ``theta``                                          ``strength``
===============  ==========================================================  ===============
``none``         min-norm fit ``theta = Phi^+ y``                            unused
``theta_noise``  ``theta + eta``, ``eta`` Gaussian direction,                ``EPS``
                 ``|eta| = EPS |theta|`` exactly
``dp``           ``theta_ridge + N(0, sigma^2 I)``, the Gaussian mechanism   unused (``epsilon``,
                 calibrated to ``(epsilon, delta)`` (see below)              ``delta``, ``ridge``)
``ridge``        ``Phi^T (K + lambda I)^{-1} y``                             ``lambda``
``label_noise``  min-norm fit to ``y + N(0, s^2)``                           ``s``
``early_stop``   ``T`` steps of gradient descent from 0 on                   ``T`` (integer)
                 ``(1/2n) |Phi theta - y|^2``, step ``1/L``,
                 ``L = lambda_max(K)/n``
``quantize``     bf16 rounding, or int8 symmetric per-tensor                 unused (``dtype``)
                 (``scale = max|theta| / 127``,
                 ``round(theta/scale) * scale``)
``prune``        the ``floor(f * p)`` smallest ``|theta_j|`` set to 0         ``f`` in [0, 1)
===============  ==========================================================  ===============

``ridge``, ``label_noise`` and ``early_stop`` release a ``theta`` in the span of the training
features (``Phi^T alpha`` for some ``alpha``): the loss at the training set stays 0, and the
attack is the undefended one (their targets carry no floor). The others move ``theta`` off the
span; their targets carry the expected *floor* of the attack's loss, its minimum near the
training set::

    floor = (p - m - n (d - 1)) / p * |theta_released - theta_fit|^2 / |theta_released|^2:

a perturbation in a generic direction leaves ``(p - m) / p`` of its energy outside the
``m``-dimensional span of the training features (``m`` feature rows; this is the loss *at* the
training set, ``info["loss_at_truth"]``, about ``EPS^2 (p - m) / p`` for ``theta_noise``), and
moving the ``n`` rows on their spheres (``n (d - 1)`` coordinates) turns the span towards
``n (d - 1)`` more of its directions. At ``p <= m + n (d - 1)`` the floor is 0 (the noise can be
fitted; only the plateau stop applies).

Differential privacy (``dp``). The model is ridge regression in the normalised form
``theta = argmin (1/n) sum (phi(x_i)^T theta - y_i)^2 + lam |theta|^2`` with ``lam = ridge / n``
(:func:`jaxrecon.models.rf.fit` minimises ``|Phi theta - y|^2 + ridge |theta|^2``). With
``|phi(x)| <= B`` and ``|y| <= C`` (labels are clipped to ``C = label_bound``), the L2
sensitivity to replacing one sample is (:func:`ridge_sensitivity`)

    Delta <= 2 B (B R + C) / (n lam),    R = C / sqrt(lam),

by the uniform-stability argument of Chaudhuri, Monteleoni & Sarwate (2011), "Differentially
private empirical risk minimization", JMLR 12, Corollary 8 (output perturbation: sensitivity
``2 G / (n Lambda)`` for a ``G``-Lipschitz loss and a ``Lambda``-strongly convex regulariser,
here ``Lambda = 2 lam``); the squared loss is ``G = 2 B (B R + C)``-Lipschitz on the ball
``|theta| <= R`` that holds every minimiser (``lam |theta*|^2 <= F(0) <= C^2``). For random
features ``phi(x) = sigma(V x)`` on the sphere ``|x| = sqrt(d)`` (the project's inputs),
``|sigma(t)| <= g |t|`` for every registered activation (``g = 1``; ``2`` for relu_tanh;
``2/sqrt(pi)`` for erf), so ``B = g |V|_2 sqrt(d)`` (:func:`feature_bound`). The noise is
``sigma = Delta sqrt(2 ln(1.25/delta)) / epsilon`` (Dwork & Roth 2014, Theorem A.1, valid for
``epsilon < 1``); for ``epsilon >= 1`` the analytic Gaussian mechanism of Balle & Wang (2018,
"Improving the Gaussian mechanism for differential privacy", Theorem 8) is used: the smallest
``sigma`` with ``Phi(Delta/(2 sigma) - epsilon sigma/Delta) - e^epsilon Phi(-Delta/(2 sigma) -
epsilon sigma/Delta) <= delta``, found by bisection (:func:`gaussian_sigma`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from . import _validate
from .features.base import Target
from .loss import feature_rows, projector_loss
from .models.rf import fit_with_info, ridge_alpha

DEFENCES = ("none", "theta_noise", "dp", "ridge", "label_noise", "early_stop", "quantize", "prune")
QUANTIZE_DTYPES = ("bfloat16", "int8")
#: Kinds whose released ``theta`` stays in the span of the training features (no floor).
IN_SPAN = ("none", "ridge", "label_noise", "early_stop")
#: ``g`` with ``|sigma(t)| <= g |t|`` for the registered activations (all have ``sigma(0) = 0``).
GROWTH = {"relu": 1.0, "tanh": 1.0, "gelu": 1.0, "erf": 2.0 / math.sqrt(math.pi), "relu_tanh": 2.0}
#: Keys of :attr:`Defended.info` (every kind has all of them; ``nan`` where one does not apply).
#: ``train_loss``: the mean squared error of the released ``theta`` on the training labels.
INFO_KEYS = ("floor", "loss_at_truth", "noise_norm", "theta_norm", "sigma", "sensitivity", "feature_bound",
             "train_loss")
#: Kinds whose numbers (:class:`Levels`) may be traced: one compiled program for all strengths.
TRACED = ("theta_noise", "dp", "ridge", "label_noise", "early_stop", "prune")


@dataclasses.dataclass(frozen=True)
class Defence:
    """A defence (hashable: a static argument under ``jit``); see the module docstring for what
    ``strength`` means per kind. ``ridge`` is the fit's ridge for every kind (``None``: 0, and
    1.0 for ``dp``, which needs one); ``label_bound`` is ``C`` of the ``dp`` bound."""

    kind: str = "none"
    strength: Optional[float] = None
    epsilon: Optional[float] = None
    delta: Optional[float] = None
    dtype: Optional[str] = None
    ridge: Optional[float] = None
    label_bound: float = 1.0

    def __post_init__(self):
        _validate.choice("kind", self.kind, DEFENCES)
        k, s = self.kind, self.strength
        if k in ("theta_noise", "ridge", "label_noise"):
            if s is None:
                raise ValueError(f"strength: the {k} defence needs a strength > 0")
            _validate.positive_float("strength", s)
        elif k == "early_stop":
            if isinstance(s, float) and s.is_integer():
                object.__setattr__(self, "strength", int(s))
            _validate.positive_int("strength", self.strength)
        elif k == "prune":
            if s is None or not 0.0 <= float(s) < 1.0:
                raise ValueError(f"strength: the prune defence needs a fraction in [0, 1), got {s!r}")
        elif k == "quantize":
            _validate.choice("dtype", self.dtype, QUANTIZE_DTYPES)
        elif k == "dp":
            if self.epsilon is None or self.delta is None:
                raise ValueError("epsilon: the dp defence needs epsilon > 0 and delta in (0, 1)")
            _validate.positive_float("epsilon", self.epsilon)
            if not 0.0 < float(self.delta) < 1.0:
                raise ValueError(f"delta: must be in (0, 1), got {self.delta!r}")
            _validate.positive_float("label_bound", self.label_bound)
            if self.ridge is not None:
                _validate.positive_float("ridge", self.ridge)
        if self.ridge is not None and k != "dp":
            _validate.positive_float("ridge", self.ridge, allow_zero=True)

    @property
    def fit_ridge(self) -> float:
        """The ridge of the fit (``ridge`` kind: its strength)."""
        if self.kind == "ridge":
            return float(self.strength)
        if self.ridge is None:
            return 1.0 if self.kind == "dp" else 0.0
        return float(self.ridge)

    @property
    def level(self) -> float:
        """One number for the defence's strength (``epsilon`` for ``dp``, 16 or 8 bits for
        ``quantize``, 0 for ``none``): what results files record."""
        if self.kind == "dp":
            return float(self.epsilon)
        if self.kind == "quantize":
            return 16.0 if self.dtype == "bfloat16" else 8.0
        return 0.0 if self.strength is None else float(self.strength)


def defence_at(kind: str, level: float, delta: Optional[float] = None, ridge: Optional[float] = None) -> Defence:
    """The defence of ``kind`` at one number (a sweep's strength axis): ``level`` is ``epsilon``
    for ``dp`` (with ``delta``, default 1e-5), the bits (16: bfloat16, 8: int8) for ``quantize``,
    the steps for ``early_stop`` and ``strength`` otherwise (:attr:`Defence.level` inverts it)."""
    _validate.choice("defence", kind, DEFENCES)
    if kind == "none":
        return Defence("none", ridge=ridge)
    if kind == "dp":
        return Defence("dp", epsilon=level, delta=1e-5 if delta is None else delta, ridge=ridge)
    if kind == "quantize":
        bits = {16.0: "bfloat16", 8.0: "int8"}
        if float(level) not in bits:
            raise ValueError(f"defence_strength: quantize takes 16 (bfloat16) or 8 (int8) bits, got {level!r}")
        return Defence("quantize", dtype=bits[float(level)], ridge=ridge)
    if kind == "ridge":
        return Defence("ridge", strength=level)
    return Defence(kind, strength=level, ridge=ridge)


class Levels(NamedTuple):
    """The numbers of a defence that :func:`defend` may take traced: ``strength`` (a float; the
    steps, an integer, for ``early_stop``; 0 where unused) and ``noise_multiplier`` (``dp``: the
    noise ``sigma`` per unit of sensitivity at ``(epsilon, delta)``, :func:`gaussian_sigma`; else 0)."""

    strength: Any
    noise_multiplier: Any


def defence_levels(defence: Defence) -> Levels:
    """The host numbers of ``defence`` (:class:`Levels`; the ``dp`` multiplier computed here)."""
    if defence.kind == "early_stop":
        return Levels(int(defence.strength), 0.0)
    mult = gaussian_sigma(1.0, defence.epsilon, defence.delta) if defence.kind == "dp" else 0.0
    strength = defence.fit_ridge if defence.kind == "ridge" else defence.strength
    return Levels(0.0 if strength is None else float(strength), mult)


class Defended(NamedTuple):
    """A released model: the target the attack sees (with ``floor`` for an off-span defence) and
    ``info`` (:data:`INFO_KEYS`: scalars, ``nan`` where one does not apply)."""

    target: Target
    info: dict


# -- the pieces (pure) ------------------------------------------------------------------------

def _active(theta, active):
    return jnp.ones(theta.shape, bool) if active is None else active


def relative_noise(theta, eps, key, active=None):
    """``eta`` with a uniformly random direction on the ``active`` entries and ``|eta| = eps |theta|``."""
    g = jnp.where(_active(theta, active), jax.random.normal(key, theta.shape, theta.dtype), 0)
    return g * (eps * jnp.linalg.norm(theta) / jnp.linalg.norm(g))


def quantize(theta, dtype: str):
    """``theta`` rounded to bf16 (round to nearest even), or int8 symmetric per tensor:
    ``round(theta / s) * s`` with ``s = max|theta| / 127`` (values in ``[-127, 127] s``)."""
    _validate.choice("dtype", dtype, QUANTIZE_DTYPES)
    if dtype == "bfloat16":
        return theta.astype(jnp.bfloat16).astype(theta.dtype)
    scale = jnp.max(jnp.abs(theta)) / 127
    safe = jnp.where(scale > 0, scale, 1)
    return jnp.clip(jnp.round(theta / safe), -127, 127) * safe


def prune(theta, fraction, active=None):
    """``theta`` with the ``floor(fraction * p)`` smallest-magnitude ``active`` entries set to 0
    (``p`` the number of active entries; ties broken by index)."""
    act = _active(theta, active)
    k = jnp.floor(fraction * jnp.sum(act)).astype(jnp.int32)
    mag = jnp.where(act, jnp.abs(theta), jnp.inf)
    rank = jnp.argsort(jnp.argsort(mag, stable=True), stable=True)
    return jnp.where(rank < k, 0, theta)


def early_stopped_alpha(K, y, steps: int):
    """``alpha_T`` with ``theta_T = Phi^T alpha_T`` after ``T = steps`` gradient steps from 0 on
    ``(1/2n) |Phi theta - y|^2`` with step ``1/L``, ``L = lambda_max(K)/n``: in kernel form
    ``alpha <- alpha - (K alpha - y) / lambda_max(K)`` (every iterate lies in the span)."""
    lmax = jnp.linalg.eigvalsh(K)[-1]
    return jax.lax.fori_loop(0, steps, lambda _, a: a - (K @ a - y) / lmax, jnp.zeros_like(y))


def feature_bound(fmap, radius: Optional[float] = None):
    """``B >= |phi(x)|`` for every ``|x| <= radius`` (default ``sqrt(d)``): ``g |V|_2 radius``
    (random features only; ``g`` from :data:`GROWTH`)."""
    act = getattr(fmap, "activation", None)
    if not hasattr(fmap, "weights") or act not in GROWTH:
        raise ValueError(f"fmap: the dp bound needs random features with an activation in {sorted(GROWTH)}")
    radius = math.sqrt(fmap.input_dim) if radius is None else radius
    V = fmap.weights()
    # |V|_2 from the smaller Gram matrix: an SVD of the p x d matrix allocates p x p on CPUs (40 GB at p = 1e5)
    G = V.T @ V if V.shape[0] >= V.shape[1] else V @ V.T
    return GROWTH[act] * jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(G)[-1], 0)) * radius


def ridge_sensitivity(B, C, lam, n):
    """L2 sensitivity ``2 B (B C / sqrt(lam) + C) / (n lam)`` of normalised ridge regression
    (module docstring; Chaudhuri, Monteleoni & Sarwate 2011, Cor. 8)."""
    return 2 * B * (B * C / jnp.sqrt(lam) + C) / (n * lam)


def _analytic_ok(sigma: float, eps: float, delta: float) -> bool:
    """Balle & Wang (2018), Thm 8, with ``Delta = 1``: is ``N(0, sigma^2)`` noise (eps, delta)-DP?"""
    a, b = 1 / (2 * sigma), eps * sigma
    second = math.exp(eps + special.log_ndtr(-a - b)) if eps + special.log_ndtr(-a - b) > -745 else 0.0
    return special.ndtr(a - b) - second <= delta


def gaussian_sigma(sensitivity: float, epsilon: float, delta: float, mechanism: str = "auto") -> float:
    """Noise standard deviation of the Gaussian mechanism for L2 ``sensitivity`` and (eps, delta).

    ``"classic"``: ``Delta sqrt(2 ln(1.25/delta)) / epsilon`` (Dwork & Roth, Thm A.1; ``epsilon < 1``
    only). ``"analytic"``: the smallest sigma meeting Balle & Wang's exact condition (bisection to
    a relative 1e-12). ``"auto"``: classic for ``epsilon < 1``, analytic otherwise.
    """
    eps = _validate.positive_float("epsilon", epsilon)
    if not 0.0 < float(delta) < 1.0:
        raise ValueError(f"delta: must be in (0, 1), got {delta!r}")
    _validate.choice("mechanism", mechanism, ("auto", "classic", "analytic"))
    if mechanism == "auto":
        mechanism = "classic" if eps < 1 else "analytic"
    if mechanism == "classic":
        if eps >= 1:
            raise ValueError(f"epsilon: the classic Gaussian mechanism needs epsilon < 1, got {eps}")
        return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / eps
    lo, hi = 1e-12, 1.0
    while not _analytic_ok(hi, eps, delta):
        hi *= 2
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if _analytic_ok(mid, eps, delta) else (mid, hi)
        if hi / lo - 1 < 1e-12:
            break
    return sensitivity * hi


# -- the release ------------------------------------------------------------------------------

def _ridge_theta(fmap, x, y, lam):
    """``Phi^T (K + lam I)^{-1} y`` for a (possibly traced) ``lam > 0`` and a prepared map (the ridge
    branch of :func:`jaxrecon.models.rf.fit_with_info`, which validates ``ridge`` as a number)."""
    return fmap.adjoint(x, ridge_alpha(fmap.gram(x, x), y, lam))


def _fit_theta(defence: Defence, lv: Levels, fmap, x, y, key):
    """The fitted (unperturbed) ``theta`` of the defence's training procedure (``fmap`` prepared)."""
    if defence.kind == "label_noise":
        y = y + jnp.asarray(lv.strength, y.dtype) * jax.random.normal(key, y.shape, y.dtype)
    if defence.kind == "dp":
        y = jnp.clip(y, -defence.label_bound, defence.label_bound)
    if defence.kind == "ridge":
        return _ridge_theta(fmap, x, y, lv.strength)
    if defence.kind == "early_stop":
        K = fmap.gram(x, x)
        return fmap.adjoint(x, early_stopped_alpha(K, y.astype(K.dtype), lv.strength))
    return fit_with_info(fmap, x, y, defence.fit_ridge).theta


def defend(fmap, x, y, defence: Defence, key, active=None, levels: Optional[Levels] = None) -> Defended:
    """Fit ``fmap`` to ``(x, y)`` and release ``theta`` under ``defence`` (pure; ``defence`` static).

    ``key`` draws the defence's noise (``theta_noise``, ``dp``, ``label_noise``). ``active`` (bool,
    shape ``(p,)``; default all) marks the real features of a zero-padded map: noise and pruning
    touch only those. ``levels`` (default :func:`defence_levels` of ``defence``) are the defence's numbers,
    traced or not; given, they replace the ``defence``'s own (the kinds of :data:`TRACED`; a
    compiled program takes them as arguments). Returns :class:`Defended`; its target carries
    ``floor`` unless the defence keeps ``theta`` in the span (:data:`IN_SPAN`).
    """
    if not isinstance(defence, Defence):
        raise ValueError(f"defence: must be a Defence, got {type(defence).__name__}")
    _validate.matrix("x", x, width=fmap.input_dim)
    lv = defence_levels(defence) if levels is None else levels
    x, y = jnp.asarray(x), jnp.asarray(y)
    prepared = fmap.prepare()  # V generated once here; the released target keeps the map as given
    clean = _fit_theta(defence, lv, prepared, x, y, key)
    nan = jnp.asarray(jnp.nan, clean.dtype)
    info = {k: nan for k in INFO_KEYS}
    k = defence.kind
    if k == "theta_noise":
        theta = clean + relative_noise(clean, jnp.asarray(lv.strength, clean.dtype), key, active)
    elif k == "dp":
        B = feature_bound(prepared)
        delta_2 = ridge_sensitivity(B, defence.label_bound, defence.fit_ridge / x.shape[0], x.shape[0])
        sigma = delta_2 * jnp.asarray(lv.noise_multiplier, delta_2.dtype)
        theta = clean + jnp.where(_active(clean, active), sigma * jax.random.normal(key, clean.shape, clean.dtype), 0)
        info.update(sigma=sigma.astype(clean.dtype), sensitivity=delta_2.astype(clean.dtype),
                    feature_bound=B.astype(clean.dtype))
    elif k == "quantize":
        theta = quantize(clean, defence.dtype)
    elif k == "prune":
        theta = prune(clean, lv.strength, active)
    else:
        theta = clean
    p = jnp.sum(_active(clean, active)).astype(clean.dtype)
    m = feature_rows(prepared, x)
    noise_sq = jnp.sum((theta - clean) ** 2)
    fit_err = prepared.project(x, theta) - y.astype(clean.dtype)
    info.update(noise_norm=jnp.sqrt(noise_sq), theta_norm=jnp.linalg.norm(clean),
                loss_at_truth=projector_loss(prepared, theta, x, form="residual"),
                train_loss=jnp.mean(fit_err ** 2).astype(clean.dtype))
    if k in IN_SPAN:
        return Defended(Target(fmap, theta), info)
    free = jnp.maximum(p - m - x.shape[0] * (x.shape[1] - 1), 0)
    floor = free / p * noise_sq / jnp.maximum(jnp.sum(theta * theta), jnp.finfo(theta.dtype).tiny)
    info["floor"] = floor
    return Defended(Target(fmap, theta, floor), info)
