"""jaxrecon.theory against closed forms and an independent quadrature (float64 NumPy, no compiles)."""

import argparse
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from jaxrecon import theory
from jaxrecon.activations import ACTIVATIONS

SQRT_2PI = math.sqrt(2 * math.pi)


def _double_factorial(m):  # (-1)!! = 1
    return math.prod(range(m, 0, -2)) if m > 0 else 1


def _he_at_zero(m):
    """``He_m(0)``: 0 for odd m, ``(-1)^(m/2) (m-1)!!`` for even m."""
    return 0.0 if m % 2 else (-1) ** (m // 2) * _double_factorial(m - 1)


def relu_closed_form(k):
    """``c_k`` of relu. ``E[relu(G) He_k(G)] = int_0^inf x He_k(x) phi(x) dx``; with
    ``x He_k = He_{k+1} + k He_{k-1}`` and ``He_m phi = -(He_{m-1} phi)'`` (so
    ``int_0^inf He_m phi = He_{m-1}(0) phi(0)``, m >= 1) this is ``phi(0) (He_k(0) + k He_{k-2}(0))``
    for k >= 2: zero for odd k, ``(-1)^(k/2+1) (k-3)!! / sqrt(2 pi)`` for even k."""
    if k == 0:
        return 1 / SQRT_2PI
    if k == 1:
        return 0.5
    moment = (_he_at_zero(k) + k * _he_at_zero(k - 2)) / SQRT_2PI
    return moment / math.sqrt(math.factorial(k))


def _phi_moment(a, m):
    """``E[Phi(a G) He_m(G)]`` (Phi the normal CDF). By Gaussian integration by parts it is
    ``E[d^m/dz^m Phi(a z)] = a^m (-1)^(m-1) E[He_{m-1}(a G) phi(a G)]`` for m >= 1, and
    ``phi(a x) phi(x) = phi(s x) / sqrt(2 pi)`` with ``s = sqrt(1 + a^2)`` turns the expectation into
    ``E[He_{m-1}(rho Y)] / (sqrt(2 pi) s)``, ``rho = a / s``, where
    ``E[He_j(rho Y)] = (j-1)!! (rho^2 - 1)^(j/2)`` for even j and 0 for odd j."""
    if m == 0:
        return 0.5
    j = m - 1
    if j % 2:
        return 0.0
    s = math.sqrt(1 + a * a)
    rho2 = a * a / (s * s)
    return a ** m * (-1) ** j * _double_factorial(j - 1) * (rho2 - 1) ** (j // 2) / (SQRT_2PI * s)


def erf_closed_form(k):
    """``erf(z) = 2 Phi(sqrt(2) z) - 1``."""
    moment = 2 * _phi_moment(math.sqrt(2), k) - (1.0 if k == 0 else 0.0)
    return moment / math.sqrt(math.factorial(k))


def gelu_closed_form(k):
    """``gelu(z) = z Phi(z)`` and ``z He_k = He_{k+1} + k He_{k-1}``."""
    moment = _phi_moment(1.0, k + 1) + (k * _phi_moment(1.0, k - 1) if k else 0.0)
    return moment / math.sqrt(math.factorial(k))


def _gauss_hermite(fn, order, nodes=150):
    """An independent reference for smooth activations: Gauss-Hermite (probabilists') quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    with jax.enable_x64(True):
        y = np.asarray(fn(jnp.asarray(x)), np.float64)
    return theory.normalized_hermite(x, order) @ (w * y) / SQRT_2PI


def test_closed_form_helpers_match_hand_values():
    assert relu_closed_form(2) == pytest.approx(1 / math.sqrt(4 * math.pi), abs=1e-15)
    assert relu_closed_form(4) == pytest.approx(-1 / math.sqrt(48 * math.pi), abs=1e-15)
    assert relu_closed_form(6) == pytest.approx(3 / math.sqrt(2 * math.pi * 720), abs=1e-15)
    assert erf_closed_form(1) == pytest.approx(2 / math.sqrt(3 * math.pi), abs=1e-15)
    assert erf_closed_form(3) == pytest.approx(-4 / (9 * SQRT_2PI), abs=1e-15)
    assert gelu_closed_form(0) == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-15)
    assert gelu_closed_form(2) == pytest.approx(3 / (4 * SQRT_2PI), abs=1e-15)


@pytest.mark.parametrize("name, closed_form", [("relu", relu_closed_form), ("erf", erf_closed_form),
                                               ("gelu", gelu_closed_form)])
def test_hermite_coefficients_match_closed_forms(name, closed_form):
    c = theory.hermite_coefficients(name, 20)
    expected = np.array([closed_form(k) for k in range(21)])
    np.testing.assert_allclose(c, expected, rtol=0, atol=1e-12)


def test_relu_first_coefficients_and_vanishing_odd_orders():
    c = theory.hermite_coefficients("relu")
    assert c.shape == (9,) and c.dtype == np.float64
    assert abs(c[0] - 1 / SQRT_2PI) < 1e-12
    assert abs(c[1] - 0.5) < 1e-12
    assert abs(c[2] - 1 / math.sqrt(4 * math.pi)) < 1e-12
    assert np.all(np.abs(c[3::2]) < 1e-12)


@pytest.mark.parametrize("name", ["tanh", "erf", "gelu"])
def test_smooth_activations_match_gauss_hermite(name):
    np.testing.assert_allclose(theory.hermite_coefficients(name, 30),
                               _gauss_hermite(ACTIVATIONS[name], 30), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_odd_activations_have_zero_even_coefficients(name):
    c = theory.hermite_coefficients(name, 16)
    assert np.all(np.abs(c[0::2]) < 1e-12)
    assert np.all(np.abs(c[1::2]) > 1e-4)


def test_relu_tanh_is_the_sum_of_relu_and_tanh():
    np.testing.assert_allclose(theory.hermite_coefficients("relu_tanh", 12),
                               theory.hermite_coefficients("relu", 12)
                               + theory.hermite_coefficients("tanh", 12), rtol=0, atol=1e-13)


def test_callable_with_kink_and_float32_default():
    """A user callable (|z|: even, kinked at 0), evaluated in float64 even when x64 is off."""
    with jax.enable_x64(False):
        c = theory.hermite_coefficients(jnp.abs, 10)
    expected = [2 * relu_closed_form(k) if k % 2 == 0 else 0.0 for k in range(11)]  # |z| = 2 relu(z) - z
    np.testing.assert_allclose(c, expected, rtol=0, atol=1e-12)
    assert theory.classify_symmetry(theory.hermite_coefficients(jnp.abs, 16)) == "even"


@pytest.mark.parametrize("name, expected", [("relu", "relu-like"), ("gelu", "relu-like"), ("tanh", "odd"),
                                            ("erf", "odd"), ("relu_tanh", "none")])
def test_symmetry_classes(name, expected):
    assert theory.summary(name)["symmetry"] == expected


def test_classify_symmetry_on_coefficient_vectors():
    assert theory.classify_symmetry([0, 1, 0, 0]) == "odd"  # linear: odd first
    assert theory.classify_symmetry([1, 0, 1, 0, 1]) == "even"
    assert theory.classify_symmetry([1, 1, 1, 1e-9, 1]) == "relu-like"  # 1e-9 is below tol * norm
    assert theory.classify_symmetry([1, 1, 1, 1e-3, 1]) == "none"
    with pytest.raises(ValueError, match="coeffs"):
        theory.classify_symmetry([1, 0])


def _reference_second_moment(fn):
    with jax.enable_x64(True):
        f = lambda x: float(fn(jnp.asarray(x, jnp.float64))) ** 2 * math.exp(-x * x / 2) / SQRT_2PI
        return sum(integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
                   for a, b in ((-np.inf, 0), (0, np.inf)))


@pytest.mark.parametrize("name, order, tol", [("erf", 80, 1e-12), ("gelu", 40, 1e-12), ("tanh", 80, 1e-9)])
def test_parseval(name, order, tol):
    c = theory.hermite_coefficients(name, order)
    reference = _reference_second_moment(ACTIVATIONS[name])
    if name == "erf":
        assert reference == pytest.approx(2 / math.pi * math.asin(2 / 3), abs=1e-13)
    assert theory.gaussian_moment(name) == pytest.approx(reference, abs=1e-12)
    assert abs(np.sum(c ** 2) - reference) < tol


def test_relu_tanh_second_moment():
    # E[relu^2] = 1/2, 2 E[relu tanh] = E[G tanh G] = E[1 - tanh^2] (Stein): the sum is exactly 3/2.
    assert theory.gaussian_moment("relu_tanh") == pytest.approx(1.5, abs=1e-12)


def test_thresholds_and_validation():
    assert theory.counting_threshold(25, 6) == 150
    assert theory.label_threshold(6) == 6
    with pytest.raises(ValueError, match="^d:"):
        theory.counting_threshold(0, 6)
    with pytest.raises(ValueError, match="^order:"):
        theory.hermite_coefficients("relu", -1)
    with pytest.raises(ValueError, match="^activation:"):
        theory.hermite_coefficients("softplus")
    with pytest.raises(ValueError, match="^d, n:"):
        theory.summary("relu", d=5)


def test_main_json(capsys):
    assert theory.main(["--activation", "gelu", "--d", "25", "--n", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["hermite"]) == 9
    np.testing.assert_allclose(out["hermite"], [gelu_closed_form(k) for k in range(9)], rtol=0, atol=1e-12)
    assert out["symmetry"] == "relu-like"
    assert out["counting_threshold"] == 150 and out["label_threshold"] == 6
    assert theory.main(["--activation", "tanh", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["symmetry"] == "odd" and "counting_threshold" not in out


def test_main_text_and_errors(capsys):
    assert theory.main(["--activation", "relu_tanh", "--d", "4", "--n", "3"]) == 0
    text = capsys.readouterr().out
    assert "symmetry: none" in text and "p* = d n = 12" in text
    assert theory.main(["--d", "4"]) == 2
    assert capsys.readouterr().err.startswith("jaxrecon: error: d, n:")


def test_add_parser_wires_into_a_subcommand(capsys):
    parser = argparse.ArgumentParser(prog="jaxrecon")
    theory.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["theory", "--activation", "erf", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["symmetry"] == "odd"


def test_flip_check_against_the_symmetry_classes():
    # Clopper-Pearson by hand: 0 of 10 at 95 %: hi = 1 - 0.025^(1/10); 10 of 10: lo = 0.025^(1/10)
    c = theory.flip_check("none", 0, 10, level=0.95)
    assert c["rate"] == 0 and c["lo"] == 0 and c["hi"] == pytest.approx(1 - 0.025 ** 0.1, rel=1e-10)
    assert c["consistent"] is True
    assert theory.flip_check("odd", 10, 10, level=0.95)["lo"] == pytest.approx(0.025 ** 0.1, rel=1e-10)
    assert theory.flip_check("none", 1, 40)["consistent"] is False  # any flip contradicts "none"
    assert theory.flip_check("odd", 21, 40)["consistent"] is True
    assert theory.flip_check("odd", 0, 40)["consistent"] is False  # 1/2 is far outside [0, 0.12]
    assert theory.flip_check("even", 40, 40)["consistent"] is False
    assert all(theory.flip_check("relu-like", k, 40)["consistent"] for k in (0, 7, 40))
    empty = theory.flip_check("odd", 0, 0)
    assert empty["consistent"] is None and math.isnan(empty["rate"])
    assert set(theory.FLIP_RATE) == set(theory.SYMMETRY_CLASSES)
    with pytest.raises(ValueError, match="^symmetry:"):
        theory.flip_check("linear", 0, 1)
    with pytest.raises(ValueError, match="^flipped:"):
        theory.flip_check("odd", 3, 2)
    with pytest.raises(ValueError, match="^level:"):
        theory.flip_check("odd", 1, 2, level=1.0)
