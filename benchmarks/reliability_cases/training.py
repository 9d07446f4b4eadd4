"""Reliability cases of network training and of ``loss_at_truth`` (issue 30, items 1 and 4).

Bad training options fail before any work with one ``jaxrecon:`` line naming the flag as typed;
runs that train record what happened, and never more than happened:

* a network trained on all layers has ``loss_at_truth > 1e-10``, carries it as its floor
  (``summary.floor``, each row ``floor`` and ``error_vs_sqrt_floor``) and no seed is ``solved``;
* a head-only network and random features have ``loss_at_truth <= 1e-10`` and no floor;
* training that spends its budget says so (``fit.train_converged`` false, a ``training:`` line)
  and its ``fit.train_steps`` is the budget; one that converges has ``train_loss <= train_tol``;
* the ResNet on images is standardised per channel (``images.mean`` has one entry per channel).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ._case import Case

AREA = "training"
NET = ("--model", "two_layer", "--d", "4", "--n", "2", "--width", "16")
RUN = ("--seeds", "1", "--steps", "20", "--method", "adam", "--quiet")
FLOOR_MIN = 1e-10


def _out(*argv):
    return ("reconstruct", *argv, "--out", "{dir}/r")


def _summary(workdir: Path):
    path = workdir / "r" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def check_run(train=None, converged=None, floor=None, channels=None, stderr_has=()):
    """A ``check`` of ``r/summary.json``: ``train`` the subset recorded, ``converged`` the training's
    verdict (with its steps and MSE consistent), ``floor`` whether the target carries one (with
    ``loss_at_truth`` on the right side of 1e-10 and the rows' floor fields), ``channels`` the
    number of per-channel means of the images."""

    def check(workdir: Path, proc):
        s = _summary(workdir)
        if s is None:
            return "no summary.json written"
        fit, lat = s["fit"], s.get("loss_at_truth")
        if lat is None or not math.isfinite(lat) or fit.get("loss_at_truth") != lat:
            return f"loss_at_truth missing or not finite: {lat!r} (fit: {fit.get('loss_at_truth')!r})"
        if f"loss_at_truth={lat:.3g}" not in proc.stdout + proc.stderr:
            return "the header line does not show loss_at_truth"
        for text in stderr_has:
            if text not in proc.stdout + proc.stderr:
                return f"the run does not say {text!r}"
        if train is not None and fit.get("train") != train:
            return f"fit.train is {fit.get('train')!r}, expected {train!r}"
        if converged is not None:
            if fit.get("train_converged") != converged:
                return f"fit.train_converged is {fit.get('train_converged')!r}, expected {converged}"
            if converged and not fit["train_loss"] <= fit["train_tol"]:
                return f"converged, yet train_loss {fit['train_loss']:.3g} > train_tol {fit['train_tol']:g}"
            if not converged and fit["train_steps"] != fit["train_max_steps"] and math.isfinite(fit["train_loss"]):
                return f"not converged after {fit['train_steps']} of {fit['train_max_steps']} steps with a finite MSE"
        if floor is True:
            if not lat > FLOOR_MIN or s.get("floor") is None or not math.isclose(s["floor"], lat, rel_tol=1e-5):
                return f"an off-span target (loss_at_truth {lat:.3g}) without its floor ({s.get('floor')!r})"
            for row in s["results"]:
                if row["solved"]:
                    return f"seed {row['seed']} solved below the target's floor {lat:.3g}"
                want = row["error_sign"] / math.sqrt(s["floor"])
                if not math.isclose(row.get("error_vs_sqrt_floor", math.nan), want, rel_tol=1e-9):
                    return f"seed {row['seed']}: error_vs_sqrt_floor {row.get('error_vs_sqrt_floor')!r}, expected {want}"
        if floor is False and (not lat <= FLOOR_MIN or s.get("floor") is not None):
            return f"a target in the span with loss_at_truth {lat:.3g}, floor {s.get('floor')!r}"
        if channels is not None and len(s.get("images", {}).get("mean", [])) != channels:
            return f"images.mean is {s.get('images', {}).get('mean')!r}, expected {channels} per-channel means"
        return None

    return check


def _bad(name, *flag_value, mention=None, extra=NET):
    flag = flag_value[0]
    return Case(name, AREA, _out(*extra, *flag_value, *RUN), mention=(mention or flag,), forbid=("r",))


CASES = [
    # bad options: one line naming the flag typed, nothing written
    _bad("train_tol_negative", "--train-tol", "-1"),
    _bad("train_tol_nan", "--train-tol", "nan"),
    _bad("train_tol_inf", "--train-tol", "inf"),
    _bad("train_tol_word", "--train-tol", "small"),
    _bad("train_tol_empty", "--train-tol", ""),
    _bad("train_tol_dotted_negative", "--model.train_tol=-1e-7", mention="--model.train_tol"),
    _bad("train_lr_zero", "--train-lr", "0"),
    _bad("train_lr_negative", "--train-lr=-1e-5", mention="--train-lr"),
    _bad("train_lr_inf", "--train-lr", "inf"),
    _bad("train_lr_dotted_zero", "--model.train_lr", "0"),
    _bad("train_steps_negative", "--train-steps", "-5"),
    _bad("train_steps_float", "--train-steps", "1.5"),
    _bad("train_steps_dotted_zero", "--model.train_steps", "0"),
    _bad("train_subset_unknown", "--train", "body"),
    _bad("train_subset_dotted_unknown", "--model.train", "everything"),
    _bad("train_lr_diverges", "--train-lr", "1e30"),
    _bad("train_lr_diverges_x64", "--train-lr", "1e300", extra=NET + ("--x64",)),
    _bad("train_lr_diverges_head", "--train-lr", "1e30", extra=NET + ("--train", "head")),
    _bad("classes_fewer_than_image_classes", "--classes", "3",
         extra=("--model", "two_layer", "--data", "digits", "--data-classes", "5", "--n", "5", "--width", "4")),
    _bad("resnet_classes", "--classes", "2", extra=("--model", "resnet", "--d", "192", "--n", "2", "--width", "1")),
    # runs: what they record is what happened
    Case("all_layers_floor", AREA, _out(*NET, *RUN), expect="ok",
         check=check_run(train="all", converged=True, floor=True, stderr_has=("floor:",))),
    Case("all_layers_floor_x64", AREA, _out(*NET, *RUN, "--x64"), expect="ok",
         check=check_run(train="all", converged=True, floor=True)),
    Case("all_layers_classes", AREA, _out(*NET, "--classes", "3", *RUN), expect="ok",
         check=check_run(train="all", converged=True, floor=True)),
    Case("all_layers_tanh", AREA, _out(*NET, "--activation", "tanh", *RUN), expect="ok",
         check=check_run(train="all", floor=True)),
    Case("head_in_span", AREA, _out(*NET, "--train", "head", *RUN), expect="ok",
         check=check_run(train="head", converged=True, floor=False)),
    Case("head_in_span_dotted", AREA, _out(*NET, "--model.train", "head", *RUN), expect="ok",
         check=check_run(train="head", floor=False)),
    Case("budget_spent", AREA, _out(*NET, "--train-steps", "3", *RUN), expect="ok",
         check=check_run(train="all", converged=False, stderr_has=("training: MSE",))),
    Case("budget_spent_head", AREA, _out(*NET, "--train", "head", "--train-steps", "2", *RUN), expect="ok",
         check=check_run(train="head", converged=False, stderr_has=("training: MSE",))),
    Case("tol_zero_runs_the_budget", AREA, _out(*NET, "--train-tol", "0", "--train-steps", "40", *RUN), expect="ok",
         check=check_run(converged=False)),
    Case("paper_lr_spends_the_budget", AREA, _out(*NET, "--train-lr", "1e-5", "--train-steps", "50", *RUN),
         expect="ok", check=check_run(converged=False, stderr_has=("training: MSE",))),
    Case("loose_tol", AREA, _out(*NET, "--train-tol", "1e-2", *RUN), expect="ok", check=check_run(converged=True)),
    Case("random_features_no_floor", AREA, _out("--d", "4", "--n", "2", "--p", "64", *RUN), expect="ok",
         check=check_run(floor=False)),
    Case("digits_one_hot", AREA, _out("--model", "two_layer", "--data", "digits", "--data-classes", "3", "--classes",
                                      "3", "--n", "3", "--width", "20", *RUN), expect="ok",
         check=check_run(train="all", converged=True, floor=True)),
    Case("resnet_images_per_channel", AREA, _out("--model", "resnet", "--data", "photos16", "--image-size", "8",
                                                 "--data-classes", "1,3", "--n", "2", "--width", "1",
                                                 "--train-steps", "300", *RUN),
         expect="ok", check=check_run(train="all", channels=3)),
    Case("resnet_grey_images", AREA, _out("--model", "resnet", "--data", "digits", "--data-classes", "0,1", "--n", "2",
                                          "--width", "1", "--train-steps", "300", *RUN),
         expect="ok", check=check_run(train="all", channels=1)),
]
