"""The configuration of ``jaxrecon reconstruct``: one frozen :class:`ReconstructConfig` in sections.

Sections: ``data`` (the training set), ``model`` (what is fitted on it), ``attack`` (the
reconstruction) and ``scale`` (memory, precision, devices); ``seed`` seeds everything. Each leaf is
a flag ``--section.field`` with its flat spelling (``--model.p_over_dn`` / ``--p-over-dn``); see
:mod:`jaxrecon.config`. :meth:`ReconstructConfig.resolve` checks every field and returns a new
config with the defaults that depend on other fields filled in (``d``, ``p``, ``width``, ``seeds``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from .. import _validate
from ..activations import ACTIVATIONS
from ..config import Config, option, section
from ..features.random_features import PRECISIONS
from ..models import MODELS, TRAIN_SUBSETS
from ..attack import DEFAULT_METHOD, METHODS, method_config
from ..attack.options import config_sections, from_sections
from ..attack.methods import paper_lr
from ..scale import Layout, choose_layout, parse_bytes

#: ``d`` of synthetic data when none is given, and for the ResNet (3 x 32 x 32, the paper's input).
SYNTHETIC_D, RESNET_D = 100, 3072


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """training data: synthetic points of the sphere or n images of a dataset"""

    name: str = option("synthetic", "synthetic, or an image dataset: cifar10, tinyimagenet, mnist, fashion_mnist "
                       "(read from --data-dir) or digits, photos16, photos32, photos64 (bundled); d = H*W*C",
                       flat="data")
    dir: Optional[str] = option(None, "directory of the on-disk datasets (default: $JAXRECON_DATA); nothing "
                                "is downloaded", flat="data_dir")
    classes: Optional[str] = option(None, "image classes: indices '6,9' or a count '2' (first k); default: the "
                                    "dataset's (cifar10: frog,truck)", flat="data_classes")
    image_size: Optional[int] = option(None, "resize images to SIZE x SIZE")
    d: Optional[int] = option(None, f"input dimension (default {SYNTHETIC_D}; {RESNET_D} = 3x32x32 for --model "
                              "resnet; H*W*C of an image dataset)")
    n: int = option(20, "number of training samples")
    noise: float = option(0.5, "label noise std of the synthetic task")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """the model fitted on the data; the attack sees its parameters"""

    name: str = option("rf", "rf: random features; two_layer: W2 relu(W1 x); resnet: the paper's ResNet "
                       "(image-shaped d = 3*s*s). Networks are trained by full-batch GD and the target is the "
                       "change of the head", flat="model", choices=MODELS)
    p: Optional[int] = option(None, "number of random features (parameters); or give --p-over-dn")
    p_over_dn: Optional[float] = option(None, "p as a multiple of d*n (p = round(r*d*n))")
    activation: str = option("relu", "RF activation", choices=sorted(ACTIVATIONS))
    ridge: float = option(0.0, "ridge of the least-squares fit")
    width: Optional[int] = option(None, "hidden units / ResNet channels (default: from --p or --p-over-dn, "
                                  "p = width*classes or 49*width head parameters)")
    classes: int = option(1, "outputs k of the two-layer net (one-hot targets)")
    train: str = option("all", "network layers trained by full-batch GD on the MSE: all (the paper's; the "
                        "target's span is then approximate: see loss_at_truth) or head (theta exactly in the span)",
                        choices=TRAIN_SUBSETS)
    train_tol: float = option(1e-7, "networks: GD stops when the training MSE is <= this (the paper's 1e-7; 0: "
                              "run --train-steps)")
    train_steps: int = option(100_000, "networks: step budget of GD (it stops earlier at --train-tol; the "
                              "paper's budget is 1e6)")
    train_lr: Optional[float] = option(None, "networks: GD learning rate (default: 0.1/lambda_max of the "
                                       "Gauss-Newton Hessian at initialisation; the paper's 1e-5 suits its "
                                       "widths only)")


_PARTS = config_sections()


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """the attack: method, step budget, seeds"""

    method: str = option(DEFAULT_METHOD, "attack method", choices=sorted(METHODS))
    steps: int = option(10_000, "step budget per seed")
    seeds: Optional[int] = option(None, "attack seeds, vmapped in one program (default: 4; 1 for image datasets, "
                                  "whose steps cost d/100 times more and whose figure shows one seed)")
    chunk: int = option(250, "steps per compiled chunk (progress granularity)")
    # every option of every part of the method, by its dotted name (jaxrecon.attack.options):
    # --attack.lm.cg_iters 40, short spelling --cg-iters; None: the method's value
    first_order: _PARTS["first_order"] = section(_PARTS["first_order"])
    lm: _PARTS["lm"] = section(_PARTS["lm"])
    start: _PARTS["start"] = section(_PARTS["start"])
    stop: _PARTS["stop"] = section(_PARTS["stop"])
    stall: _PARTS["stall"] = section(_PARTS["stall"])
    population: _PARTS["population"] = section(_PARTS["population"])
    loss: _PARTS["loss"] = section(_PARTS["loss"])


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """memory, precision and devices"""

    block_size: Optional[int] = option(None, "stream V in blocks of this many rows (default: --memory-budget "
                                       "decides)")
    memory_budget: Optional[str] = option("auto", "memory per device for V and the attack, e.g. 4GB: V stored when "
                                          "it fits, else streamed with the largest block that fits; auto: half "
                                          "the free memory of the device (host on CPU)")
    precision: str = option("highest", "matmul precision of the attack (tf32/bf16 are faster on GPUs; the fit "
                            "stays exact)", choices=PRECISIONS)
    shards: int = option(1, "split the random features over this many devices (needs --block-size or "
                         "--memory-budget)")
    seed_shards: int = option(1, "split the vmapped seeds over this many devices")
    x64: bool = option(False, "compute in float64 (library callers enable it: jaxrecon.x64())")


@dataclasses.dataclass(frozen=True)
class DefenceConfig:
    """a defence of the released theta (jaxrecon.defences; random features only, at most one)"""

    theta_noise: Optional[float] = option(None, "Gaussian noise on theta, |noise| = EPS |theta|")
    dp_epsilon: Optional[float] = option(None, "the Gaussian mechanism on the ridge fit at this epsilon (ridge "
                                         "default 1; labels clipped to [-1, 1])")
    dp_delta: float = option(1e-5, "delta of --dp-epsilon")
    label_noise: Optional[float] = option(None, "fit labels y + N(0, S^2)")
    early_stop_steps: Optional[int] = option(None, "theta after T steps of gradient descent from 0 (step 1/L)")
    quantize: Optional[str] = option(None, "round theta to bfloat16 or int8 (symmetric, per tensor)",
                                     choices=("bfloat16", "int8"))
    prune: Optional[float] = option(None, "zero the FRACTION of theta's entries smallest in magnitude")


@dataclasses.dataclass(frozen=True, init=False)
class ReconstructConfig(Config):
    """One reconstruction run: data -> model -> attack, at some scale.

    Built from sections or flat names: ``ReconstructConfig(d=10, n=4, p=800, steps=50)`` is
    ``ReconstructConfig(data={"d": 10, "n": 4}, model={"p": 800}, attack={"steps": 50})``.
    """

    seed: int = option(0, "base seed (data, features and attack keys)")
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    attack: AttackConfig = section(AttackConfig)
    scale: ScaleConfig = section(ScaleConfig)
    defence: DefenceConfig = section(DefenceConfig)

    def resolve(self) -> "ReconstructConfig":
        """A new config with every field checked and the dependent defaults filled in.

        ``d`` (:func:`default_d`), ``p`` (from ``p_over_dn``: ``p = round(r d n)``; for networks
        ``width`` x head parameters per width), ``p_over_dn = p / (d n)`` and ``seeds`` (4 for
        synthetic data, 1 for images). A resolved config resolves to itself.
        """
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed!r}")
        data = _resolve_data(self.data, self.model.name)
        model = _resolve_model(self.model, data.d, data.n)
        attack = _resolve_attack(self.attack, data.name)
        cfg = dataclasses.replace(self, data=data, model=model, attack=attack)
        _check_scale(cfg)
        cfg.method_cfg()  # validates optimizer / lr
        if cfg.defence_spec() is not None and model.name != "rf":
            raise ValueError("defence: the defence options apply to --model rf only")
        return cfg

    def defence_spec(self):
        """The :class:`~jaxrecon.defences.Defence` the options ask for (``None``: no defence; the
        ridge of the fit is ``--ridge``, which is itself the ridge defence)."""
        from ..defences import Defence

        dc, ridge = self.defence, self.model.ridge or None
        given = {k: getattr(dc, k) for k in ("theta_noise", "dp_epsilon", "label_noise", "early_stop_steps",
                                             "quantize", "prune") if getattr(dc, k) is not None}
        if len(given) > 1:
            raise ValueError(f"defence: give at most one defence option, got {sorted(given)}")
        if not given:
            return None
        (name, v), = given.items()
        if name == "dp_epsilon":
            return Defence("dp", epsilon=v, delta=dc.dp_delta, ridge=ridge)
        if name == "quantize":
            return Defence("quantize", dtype=v, ridge=ridge)
        kind = {"early_stop_steps": "early_stop"}.get(name, name)
        return Defence(kind, strength=v, ridge=ridge)

    def layout(self, free_bytes: Optional[int] = None) -> Layout:
        """How the random features hold ``V`` (resolved configs, ``--model rf``): streamed in blocks of
        ``block_size`` when given, else :func:`jaxrecon.scale.choose_layout` of ``memory_budget`` (per
        device, for this run's vmapped seeds per device). An ``auto`` budget reads the free memory
        (:func:`jaxrecon.runner.preflight.available_memory`) unless ``free_bytes`` is given."""
        sc = self.scale
        if sc.block_size is not None:
            return Layout(False, sc.block_size, f"--block-size {sc.block_size}")
        if _is_auto(sc.memory_budget) and free_bytes is None:
            from . import preflight

            free_bytes = preflight.available_memory()
        return choose_layout(self.model.p, self.data.d, self.data.n, -(-self.attack.seeds // sc.seed_shards),
                             8 if sc.x64 else 4, sc.memory_budget, free_bytes, shards=sc.shards,
                             copied_rows=self.copied_rows())

    def copied_rows(self) -> int:
        """Rows of ``V`` the attack copies besides ``V``: the split start's first stage on a prefix
        of the features (``Method.split_features``), else 0."""
        from ..attack.auto import may_split
        from ..attack.prepare import first_stage_rows

        m = self.method_cfg()
        kind = m.start.kind
        if kind == "auto" and self.model.name == "rf" and may_split(self.model.activation, self.model.p,
                                                                   self.data.d, self.data.n):
            kind = "split"
        if kind != "split":
            return 0
        rows = first_stage_rows(m, self.model.p, self.data.d, self.data.n)
        return rows if rows < self.model.p else 0

    def stream_block(self, free_bytes: Optional[int] = None) -> Optional[int]:
        """Rows of V per streamed block (:meth:`layout`); ``None`` for dense V or a network."""
        return self.layout(free_bytes).block_size if self.model.name == "rf" else None

    def method_cfg(self):
        """The attack's :class:`~jaxrecon.attack.Method`: the method with the options set by their dotted
        names (:mod:`jaxrecon.attack.options`; ``0`` turns ``switch_plateau`` / ``stall_plateau`` off)."""
        a = self.attack
        opts = from_sections(a)
        if any(k.startswith(("lm.", "first_order.switch")) for k in opts) and method_config(a.method).lm is None:
            with_lm = sorted(k for k in METHODS if method_config(k).lm is not None)
            given = ", ".join(sorted(k for k in opts if k.startswith(("lm.", "first_order.switch"))))
            raise ValueError(f"{given}: method {a.method!r} has no LM phase; methods with one: {with_lm}")
        off = {k for k in ("first_order.switch_plateau", "lm.stall_plateau") if opts.get(k) == 0}
        for k in ("first_order.switch_plateau", "lm.stall_plateau"):
            v = opts.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{k.split('.')[-1]}: must be an int >= 0 (0: never), got {v!r}")
        m = method_config(a.method, **{k: v for k, v in opts.items() if k not in off})
        m = paper_lr(m, a.method, opts, self.data.name != "synthetic" or self.model.name != "rf")
        if any(k.startswith("start.split.") for k in opts) and m.start.kind not in ("split", "auto"):
            given = ", ".join(sorted(k for k in opts if k.startswith("start.split.")))
            raise ValueError(f"{given}: only for the split start (adam-lm-split, auto, or --start split); "
                             f"method {a.method!r} starts {m.start.kind!r}")
        if "first_order.switch_plateau" in off:
            m = m.with_phase(dataclasses.replace(m.first_order, switch_plateau=None))
        if "lm.stall_plateau" in off:
            if m.lm is not None:
                m = m.with_phase(dataclasses.replace(m.lm, stall_plateau=None))
            if m.start.split.lm is not None:
                split = dataclasses.replace(m.start.split, lm=dataclasses.replace(m.start.split.lm, stall_plateau=None))
                m = dataclasses.replace(m, start=dataclasses.replace(m.start, split=split))
        return m


def default_d(data: str = "synthetic", model: str = "rf", image_size: Optional[int] = None) -> int:
    """The input dimension when none is given: ``H*W*C`` of an image dataset (at ``image_size``); on
    synthetic data 100, or 3072 (``3 x 32 x 32``, the paper's input) for the ResNet."""
    if data == "synthetic":
        return RESNET_D if model == "resnet" else SYNTHETIC_D
    from ..data.registry import DATASETS, input_dim

    _validate.choice("data", data, ("synthetic", *DATASETS))
    return input_dim(data, image_size)


def _resolve_data(data: DataConfig, model: str) -> DataConfig:
    """Fill ``d``; image datasets fix it, so ``--d`` may be omitted or must agree."""
    if data.name == "synthetic" and (data.image_size is not None or data.classes is not None):
        raise ValueError("data: --image-size and --data-classes apply to image datasets, not synthetic data")
    d = default_d(data.name, model, data.image_size)
    if data.name != "synthetic" and data.d is not None and data.d != d:
        raise ValueError(f"d: --data {data.name} has d = H*W*C = {d}; omit --d or give --d {d}, got {data.d}")
    d = data.d if data.d is not None else d
    _validate.positive_int("d", d)
    _validate.positive_int("n", data.n)
    _validate.positive_float("noise", data.noise, allow_zero=True)
    return dataclasses.replace(data, d=d)


def _resolve_model(m: ModelConfig, d: int, n: int) -> ModelConfig:
    """Fill ``p`` (and a network's ``width``) and set ``p_over_dn = p / (d n)``."""
    _validate.choice("model", m.name, MODELS)
    width = m.width
    if m.name == "rf":
        p = _rf_params(m.p, m.p_over_dn, d, n)
    else:
        from ..models.train import check_network, head_params_per_width, width_for_params

        _validate.choice("train", m.train, TRAIN_SUBSETS)
        _validate.positive_int("train_steps", m.train_steps)
        _validate.positive_float("train_tol", m.train_tol, allow_zero=True)
        if m.train_lr is not None:
            _validate.positive_float("train_lr", m.train_lr)
        check_network(m.name, d, m.classes)
        if width is None:  # the width whose head has p (or p_over_dn * d * n) parameters
            if m.p is None and m.p_over_dn is None:
                raise ValueError("width: give --width, --p or --p-over-dn")
            wanted = m.p if m.p is not None else _validate.positive_float("p_over_dn", m.p_over_dn) * d * n
            width = width_for_params(wanted, m.name, m.classes)
        _validate.positive_int("width", width)
        p = width * head_params_per_width(m.name, m.classes)
    _validate.positive_int("p", p)
    _validate.choice("activation", m.activation, ACTIVATIONS)
    _validate.positive_float("ridge", m.ridge, allow_zero=True)
    return dataclasses.replace(m, p=p, p_over_dn=p / (d * n), width=width)


def _rf_params(p, p_over_dn, d: int, n: int):
    """``p``, or ``round(p_over_dn * d * n)``; both may be given only if they agree (a resolved config)."""
    if p is None and p_over_dn is None:
        raise ValueError("p: give --p or --p-over-dn")
    if p_over_dn is None:
        return p
    from_ratio = max(1, int(round(_validate.positive_float("p_over_dn", p_over_dn) * d * n)))
    if p is not None and p != from_ratio:
        raise ValueError("p: give only one of --p and --p-over-dn")
    return from_ratio


def _resolve_attack(a: AttackConfig, data: str) -> AttackConfig:
    seeds = a.seeds if a.seeds is not None else (4 if data == "synthetic" else 1)
    _validate.positive_int("seeds", seeds)
    _validate.positive_int("steps", a.steps)
    _validate.positive_int("chunk", a.chunk)
    _validate.choice("method", a.method, METHODS)
    return dataclasses.replace(a, seeds=seeds)


def _check_scale(cfg: ReconstructConfig) -> None:
    sc = cfg.scale
    if sc.block_size is not None:
        _validate.positive_int("block_size", sc.block_size)
    _validate.choice("precision", sc.precision, PRECISIONS)
    _validate.positive_int("shards", sc.shards)
    _validate.positive_int("seed_shards", sc.seed_shards)
    if not isinstance(sc.x64, bool):
        raise ValueError(f"x64: must be true or false, got {sc.x64!r}")
    auto = _is_auto(sc.memory_budget)
    if not auto:
        parse_bytes("memory_budget", sc.memory_budget)
    if cfg.model.name != "rf" and (auto, sc.precision, sc.shards) != (True, "highest", 1):
        raise ValueError("memory_budget / precision / shards: apply to --model rf only")
    if not auto and sc.block_size is not None:
        raise ValueError("memory_budget: give only one of --memory-budget and --block-size")
    if sc.shards > 1 and auto and sc.block_size is None:
        raise ValueError("shards: sharding the features needs a streamed map; give --block-size or "
                         "--memory-budget")
    if cfg.model.name == "rf" and not auto:
        cfg.layout()  # a budget too small fails here, before any work (an auto budget: in the pre-flight)


def _is_auto(budget) -> bool:
    return budget is None or budget == "auto"
