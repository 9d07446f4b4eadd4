"""Reliability cases of the labels a run reports (``status``, ``solved``, ``identified``, ``recovered``):
tiny real runs whose labels must agree with the numbers they sit beside.

A run's ``check`` reads its ``summary.json`` (``jaxrecon reconstruct``) or ``results.csv`` (``jaxrecon
sweep``) and returns a problem when a label contradicts a number (:func:`label_problem`):

* ``solved`` must be ``loss_f64 <= solved_tolerance``, where ``loss_f64`` is the residual form of the
  projector loss at ``x_hat`` in float64. For random features on synthetic data the check also
  recomputes that loss itself, independently of the library's evaluation (the run's ``V`` and
  ``theta`` rebuilt from the seed, then a NumPy least-squares projection in float64), and judges the
  labels against its own number: a run that reports ``solved`` where the point is not a zero
  (the published method in float32 stops on the kernel form, whose floor is ~1e-7) is caught even
  when the run records no ``loss_f64`` at all.
* ``converged`` is shown only for a solved seed; ``identified`` is ``error_sign <= 1e-3``;
  ``recovered`` (the fraction of rows within 1e-2) is at most what ``error_sign`` allows.
* A degenerate seed (``d = 1``, ``p <= n``) is neither solved nor identified and recovers nothing.
* The training loss is finite.

The error cases (huge noise, duplicate training points, ``p = 0``) must fail before any attack with
one ``jaxrecon:`` line naming the user's flag.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ._case import Case

AREA = "labels"
#: A result is a zero when its residual-form loss in float64 is at most this (``jaxrecon.outcomes``):
#: the labels are judged against it, whatever tolerance a run records.
SOLVED_TOL = 1e-10
TINY = ("--d", "4", "--n", "2", "--p", "64", "--seeds", "2", "--quiet")
#: at p/(dn) = 0.5 zeros of the loss that are not the training set exist; the published method
#: stops there on its float32 kernel-form loss (~6e-8) although the residual form is ~1e-7
BELOW = ("--d", "10", "--n", "4", "--p-over-dn", "0.5", "--seeds", "2", "--quiet")


def _out(*argv, out="r"):
    return ("reconstruct", *argv, "--out", "{dir}/" + out)


# --- the independent float64 loss -----------------------------------------------------------------

def _truth(summary: dict, arrays) -> list | None:
    """The residual-form loss of every seed in float64, computed here: ``V`` and ``theta`` rebuilt
    as the run built them (random features, synthetic data, no defence), the projection by NumPy
    least squares. ``None`` where the run is not such a run."""
    cfg = summary.get("config", {})
    if cfg.get("model", "rf") != "rf" or cfg.get("data", "synthetic") != "synthetic" or "defence" in summary:
        return None
    if int(cfg["d"]) == 1 or int(cfg["p"]) <= int(cfg["n"]):
        return None
    import jax

    import jaxrecon as jr
    from jaxrecon.features.random_features import RandomFeatures
    from jaxrecon.models.rf import fit_with_info

    x64, block = bool(cfg.get("x64")), cfg.get("block_size")
    act = cfg.get("activation", "relu")
    with jax.enable_x64(x64):  # theta as the run computed it, bit for bit
        _, k_model, _ = jax.random.split(jax.random.key(int(cfg["seed"])), 3)
        fmap = RandomFeatures(k_model, int(cfg["d"]), int(cfg["p"]), act, block)
        x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
        theta = jax.jit(lambda fm, a, b: fit_with_info(fm, a, b, float(cfg.get("ridge") or 0.0)).theta)(fmap, x, y)
        theta = np.asarray(theta, np.float64)
        V = np.asarray(jax.jit(lambda fm: fm.weights())(fmap), np.float64)
    sigma = jr.activations.get_activation(act)
    t = theta / np.linalg.norm(theta)
    out = []
    for x_hat in np.asarray(arrays["x_hat"], np.float64):
        with jax.enable_x64(True):
            Phi = np.asarray(sigma(jax.numpy.asarray(x_hat @ V.T)), np.float64)
        c = np.linalg.lstsq(Phi.T, t, rcond=None)[0]
        r = t - Phi.T @ c
        out.append(float(r @ r))
    return out


def _close(a: float, b: float) -> bool:
    """Two float64 evaluations of one loss agree (both at rounding level count as equal)."""
    return abs(a - b) <= 1e-12 + 1e-2 * max(abs(a), abs(b))


def label_problem(row: dict, tol: float, id_tol: float, truth: float | None = None) -> str | None:
    """What in one result row contradicts its numbers (see the module docstring), or ``None``."""
    seed = row.get("seed")
    status, solved, identified = row["status"], bool(row["solved"]), bool(row["identified"])
    recovered, err = float(row["recovered"]), float(row["error_sign"])
    if not math.isfinite(float(row.get("train_loss", 0.0))):
        return f"seed {seed}: train_loss {row['train_loss']} is not finite, yet the run reported results"
    if status == "degenerate":
        if solved or identified or recovered > 0:
            return (f"seed {seed}: degenerate, yet solved={solved} identified={identified} "
                    f"recovered={recovered}")
        return None
    loss = row.get("loss_f64")
    loss = None if loss is None or loss == "" else float(loss)
    if truth is not None:
        if loss is not None and not _close(loss, truth):
            return f"seed {seed}: loss_f64 {loss:.3g} but the float64 residual loss recomputed here is {truth:.3g}"
        loss = truth
    if loss is None:
        return f"seed {seed}: no loss_f64 (the float64 residual-form loss) recorded beside solved={solved}"
    if solved != (math.isfinite(loss) and loss <= tol):
        return f"seed {seed}: solved={solved} but the float64 residual loss is {loss:.3g} (tolerance {tol:g})"
    if status == "converged" and not solved:
        return f"seed {seed}: status converged but not solved (float64 residual loss {loss:.3g} > {tol:g})"
    if identified != (math.isfinite(err) and err <= id_tol):
        return f"seed {seed}: identified={identified} but error_sign={err:.3g} (tolerance {id_tol:g})"
    if recovered >= 1 and not (math.isfinite(err) and err <= 1e-2):
        return f"seed {seed}: recovered={recovered} but error_sign={err:.3g}"
    return None


def check_summary(expect_status=None, need_solved=None):
    """A ``check`` reading ``r/summary.json`` (and ``r/arrays.npz``); ``expect_status``: statuses
    every seed must have one of; ``need_solved``: every seed solved (True) or none (False)."""

    def check(workdir: Path, proc):
        path = workdir / "r" / "summary.json"
        if not path.exists():
            return "no summary.json written"
        s = json.loads(path.read_text())
        if not math.isfinite(float(s["fit"]["train_loss"])):
            return f"fit.train_loss {s['fit']['train_loss']} is not finite, yet the attack ran"
        arrays = np.load(workdir / "r" / "arrays.npz")
        truth = _truth(s, arrays) or [None] * len(s["results"])
        tol, id_tol = SOLVED_TOL, float(s["identified_tolerance"])
        for row, t in zip(s["results"], truth):
            problem = label_problem(row, tol, id_tol, t)
            if problem:
                return problem
            if expect_status is not None and row["status"] not in expect_status:
                return f"seed {row['seed']}: status {row['status']!r}, expected one of {list(expect_status)}"
            if need_solved is not None and bool(row["solved"]) != need_solved:
                return f"seed {row['seed']}: solved={row['solved']}, expected {need_solved}"
        return None

    return check


def check_sweep(workdir: Path, proc):
    path = workdir / "s" / "results.csv"
    if not path.exists():
        return "no results.csv written"
    meta = json.loads((workdir / "s" / "sweep.json").read_text())
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return "results.csv has no rows"
    for row in rows:
        if "loss_f64" not in row:
            return "results.csv has no loss_f64 column (the float64 residual-form loss)"
        row = {**row, "solved": row["solved"] == "1", "identified": row["identified"] == "1"}
        problem = label_problem(row, SOLVED_TOL, float(meta["identified_tolerance"]))
        if problem:
            return f"p={row['p']} {problem}"
    return None


# --- duplicate training images ------------------------------------------------------------------------

def _idx(arr, code=0x08):
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _mnist(repeat):
    """An MNIST folder of 20 random images in which ``repeat`` maps an index to the index it copies."""

    def setup(d: Path):
        folder = d / "d"
        folder.mkdir(parents=True, exist_ok=True)
        images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
        for i, j in repeat.items():
            images[i] = images[j]
        (folder / "train-images-idx3-ubyte").write_bytes(_idx(images))
        (folder / "train-labels-idx1-ubyte").write_bytes(_idx((np.arange(20) % 10).astype(np.uint8)))

    return setup


#: classes 0 and 1 hold two images each (rows 0 and 10, 1 and 11): n = 4 takes all four
MNIST = ("reconstruct", "--data", "mnist", "--data-dir", "{dir}/d", "--data-classes", "0,1", "--p-over-dn", "4",
         "--image-size", "4", "--steps", "3", "--seeds", "1", "--quiet", "--out", "{dir}/r")
#: every image of class 0 the same, every image of class 1 the same: all repeated
ALL_SAME = {i: i % 10 for i in range(10, 20)}


# --- the cases ----------------------------------------------------------------------------------------

CASES = [
    # the published method: its own stopping loss (kernel form) against the float64 residual form
    Case("published_f32_tiny_budget", AREA, _out(*TINY, "--method", "published", "--steps", "50"), expect="ok",
         check=check_summary()),
    Case("published_f32_below_threshold", AREA, _out(*BELOW, "--method", "published", "--steps", "2000"),
         expect="ok", check=check_summary()),
    Case("published_f64_below_threshold", AREA, _out(*BELOW, "--method", "published", "--steps", "2000", "--x64"),
         expect="ok", check=check_summary()),
    Case("published_f32_above_threshold", AREA, _out("--d", "4", "--n", "2", "--p-over-dn", "8", "--seeds", "2",
                                                     "--quiet", "--method", "published", "--steps", "3000"),
         expect="ok", check=check_summary()),
    Case("published_f64_tiny", AREA, _out(*TINY, "--method", "published", "--steps", "3000", "--x64"), expect="ok",
         check=check_summary()),
    Case("published_f32_seed3", AREA, _out(*BELOW, "--method", "published", "--steps", "1000", "--seed", "3"),
         expect="ok", check=check_summary()),
    Case("published_f64_converges_above_tol", AREA,
         _out("--d", "5", "--n", "2", "--p-over-dn", "0.5", "--seeds", "2", "--quiet", "--method", "published",
              "--steps", "3000", "--x64"), expect="ok", check=check_summary()),
    # the residual-form methods: a zero must be a zero in float64 too
    Case("adam_f32_solves", AREA, _out("--d", "8", "--n", "3", "--p-over-dn", "30", "--seeds", "2", "--quiet",
                                       "--method", "adam", "--steps", "2000"), expect="ok", check=check_summary()),
    Case("adam_f64_solves", AREA, _out("--d", "8", "--n", "3", "--p-over-dn", "30", "--seeds", "2", "--quiet",
                                       "--method", "adam", "--steps", "2000", "--x64"), expect="ok",
         check=check_summary()),
    Case("adam_lm_f32", AREA, _out(*TINY, "--method", "adam-lm", "--steps", "300"), expect="ok",
         check=check_summary()),
    Case("adam_lm_f64", AREA, _out(*TINY, "--method", "adam-lm", "--steps", "300", "--x64"), expect="ok",
         check=check_summary()),
    Case("auto_default_method", AREA, _out(*TINY, "--steps", "300"), expect="ok", check=check_summary()),
    Case("adam_lm_split_f32", AREA, _out(*TINY, "--method", "adam-lm-split", "--steps", "300"), expect="ok",
         check=check_summary()),
    Case("global_below_threshold", AREA, _out(*BELOW, "--method", "global", "--steps", "300"), expect="ok",
         check=check_summary()),
    Case("adam_lm_tanh", AREA, _out(*TINY, "--activation", "tanh", "--method", "adam-lm", "--steps", "300"),
         expect="ok", check=check_summary()),
    Case("adam_lm_gelu_streamed", AREA, _out(*TINY, "--activation", "gelu", "--block-size", "16", "--method",
                                             "adam-lm", "--steps", "300"), expect="ok", check=check_summary()),
    Case("adam_lm_erf_bf16", AREA, _out(*TINY, "--activation", "erf", "--precision", "bf16", "--method", "adam-lm",
                                        "--steps", "300"), expect="ok", check=check_summary()),
    Case("ridge_fit", AREA, _out(*TINY, "--ridge", "1", "--method", "adam-lm", "--steps", "200"), expect="ok",
         check=check_summary()),
    # tiny budgets: nothing converged, nothing may say so
    Case("one_step", AREA, _out(*TINY, "--steps", "1"), expect="ok", check=check_summary(need_solved=False)),
    Case("one_step_published", AREA, _out(*TINY, "--steps", "1", "--method", "published"), expect="ok",
         check=check_summary(need_solved=False)),
    Case("one_step_x64", AREA, _out(*TINY, "--steps", "1", "--x64"), expect="ok",
         check=check_summary(need_solved=False)),
    Case("two_steps_chunk_one", AREA, _out(*TINY, "--steps", "2", "--chunk", "1", "--method", "adam"),
         expect="ok", check=check_summary(need_solved=False)),
    # degenerate problems: no recovery shown
    Case("d1_n1", AREA, _out("--d", "1", "--n", "1", "--p", "8", "--seeds", "2", "--steps", "20", "--quiet"),
         expect="ok", check=check_summary(expect_status=("degenerate",))),
    Case("d1_n2_distinct", AREA, _out("--d", "1", "--n", "2", "--p", "8", "--seeds", "2", "--steps", "20",
                                      "--quiet", "--seed", "0"), expect="ok",
         check=check_summary(expect_status=("degenerate",))),
    Case("d1_n1_x64", AREA, _out("--d", "1", "--n", "1", "--p", "8", "--seeds", "1", "--steps", "20", "--quiet",
                                 "--x64"), expect="ok", check=check_summary(expect_status=("degenerate",))),
    Case("p_below_n", AREA, _out("--d", "5", "--n", "4", "--p", "3", "--seeds", "1", "--steps", "5", "--quiet"),
         expect="ok", check=check_summary(expect_status=("degenerate",))),
    Case("p_equals_n", AREA, _out("--d", "5", "--n", "4", "--p", "4", "--seeds", "1", "--steps", "5", "--quiet"),
         expect="ok", check=check_summary(expect_status=("degenerate",))),
    # duplicate training points: the law counts distinct points
    Case("d1_n3_repeats", AREA, _out("--d", "1", "--n", "3", "--p", "8", "--seeds", "1", "--steps", "20",
                                     "--quiet"), mention=("duplicate", "--d 1"), forbid=("r",)),
    Case("d1_n2_repeated", AREA, _out("--d", "1", "--n", "2", "--p", "8", "--seeds", "1", "--steps", "20",
                                      "--quiet", "--seed", "1"), mention=("duplicate", "row 1"), forbid=("r",)),
    Case("d1_n5_repeats_x64", AREA, _out("--d", "1", "--n", "5", "--p", "8", "--seeds", "1", "--steps", "20",
                                         "--quiet", "--x64"), mention=("duplicate",), forbid=("r",)),
    Case("mnist_all_images_repeated", AREA, MNIST + ("--n", "4"), setup=_mnist(ALL_SAME),
         mention=("duplicate", "--data"), forbid=("r",)),
    Case("mnist_one_image_repeated", AREA, MNIST + ("--n", "4"), setup=_mnist({10: 0}),
         mention=("duplicate", "row"), forbid=("r",)),
    Case("mnist_repeats_x64", AREA, MNIST + ("--n", "4", "--x64"), setup=_mnist(ALL_SAME),
         mention=("duplicate",), forbid=("r",)),
    Case("mnist_distinct_images_run", AREA, MNIST + ("--n", "4"), setup=_mnist({}), expect="ok",
         check=check_summary()),
    # a training loss that is not finite stops the run
    Case("noise_1e38", AREA, _out(*TINY, "--noise", "1e38", "--steps", "20"), mention=("--noise",),
         forbid=("r",)),
    Case("noise_3e38", AREA, _out(*TINY, "--noise", "3e38", "--steps", "20"), mention=("--noise",),
         forbid=("r",)),
    Case("noise_1e300_x64", AREA, _out(*TINY, "--noise", "1e300", "--steps", "20", "--x64"),
         mention=("--noise",), forbid=("r",)),
    Case("noise_1e38_x64_runs", AREA, _out(*TINY, "--noise", "1e38", "--steps", "50", "--x64"), expect="ok",
         check=check_summary()),
    Case("noise_zero", AREA, _out(*TINY, "--noise", "0", "--steps", "200", "--method", "adam-lm"), expect="ok",
         check=check_summary()),
    Case("two_layer_lr_diverges", AREA, _out("--model", "two_layer", "--d", "4", "--n", "2", "--width", "16",
                                             "--train-lr", "1e30", "--seeds", "1", "--steps", "20", "--quiet"),
         mention=("--train-lr",), forbid=("r",)),
    # zero p
    Case("p_zero", AREA, _out("--d", "4", "--n", "2", "--p", "0", "--steps", "5", "--quiet"), mention=("--p",),
         forbid=("r",)),
    Case("p_over_dn_zero", AREA, _out("--d", "4", "--n", "2", "--p-over-dn", "0", "--steps", "5", "--quiet"),
         mention=("--p-over-dn",), forbid=("r",)),
    # networks and defences: labels from the same rule
    Case("two_layer_head", AREA, _out("--model", "two_layer", "--d", "4", "--n", "2", "--width", "16", "--seeds",
                                      "1", "--steps", "200", "--quiet", "--method", "adam-lm"), expect="ok",
         check=check_summary()),
    Case("two_layer_x64", AREA, _out("--model", "two_layer", "--d", "4", "--n", "2", "--width", "16", "--seeds",
                                     "1", "--steps", "200", "--quiet", "--method", "adam-lm", "--x64"),
         expect="ok", check=check_summary()),
    Case("theta_noise_floor", AREA, _out(*TINY, "--theta-noise", "0.1", "--steps", "200", "--method", "adam-lm"),
         expect="ok", check=check_summary(need_solved=False)),
    Case("quantize_int8", AREA, _out(*TINY, "--quantize", "int8", "--steps", "200", "--method", "adam-lm"),
         expect="ok", check=check_summary()),
    # sweeps: results.csv carries the float64 loss and the same rule
    Case("sweep_published", AREA, ("sweep", "--d", "4", "--n", "2", "--p-over-dn", "0.5,8", "--seeds", "2",
                                   "--steps", "300", "--method", "published", "--no-plot", "--quiet", "--out",
                                   "{dir}/s"), expect="ok", check=check_sweep, timeout=300),
    Case("sweep_d1_degenerate", AREA, ("sweep", "--d", "1", "--n", "1", "--p", "4,8", "--seeds", "2", "--steps",
                                       "20", "--no-plot", "--quiet", "--out", "{dir}/s"), expect="ok",
         check=check_sweep, timeout=300),
    Case("sweep_x64_adam", AREA, ("sweep", "--d", "4", "--n", "2", "--p-over-dn", "0.5,8", "--seeds", "2",
                                  "--steps", "300", "--method", "adam", "--x64", "--no-plot", "--quiet", "--out",
                                  "{dir}/s"), expect="ok", check=check_sweep, timeout=300),
]
