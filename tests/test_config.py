"""Typed sectioned configs (jaxrecon.config) and the reconstruct command's config built with them."""

import argparse
import dataclasses
from typing import Optional

import jax
import pytest

from jaxrecon.config import (Config, add_arguments, from_args, from_dict, option, override, section, to_dict,
                             x64)
from jaxrecon.runner import ReconstructConfig, run_reconstruction


@dataclasses.dataclass(frozen=True)
class Inner:
    """inner section"""

    lr: Optional[float] = option(None, "learning rate")
    name: str = option("a", "a name", flat="inner_name", choices=("a", "b"))
    flag: bool = option(False, "a switch")


@dataclasses.dataclass(frozen=True, init=False)
class Outer(Config):
    steps: int = option(10, "steps")
    inner: Inner = section(Inner)


def test_from_dict_nested_dotted_and_flat():
    nested = from_dict(Outer, {"steps": 3, "inner": {"lr": 0.5, "name": "b"}})
    assert nested == Outer(steps=3, inner=Inner(lr=0.5, name="b"))
    assert from_dict(Outer, {"steps": 3, "inner.lr": 0.5, "inner_name": "b"}) == nested
    assert Outer(steps=3, lr=0.5, inner_name="b") == nested  # flat keyword arguments
    assert from_dict(Outer, {"steps": "3", "lr": "0.5", "inner_name": "b"}) == nested  # strings converted
    assert from_dict(Outer, to_dict(nested)) == nested and from_dict(Outer, to_dict(nested, flat=True)) == nested
    assert to_dict(nested) == {"steps": 3, "inner": {"lr": 0.5, "name": "b", "flag": False}}
    assert to_dict(nested, flat=True) == {"steps": 3, "lr": 0.5, "inner_name": "b", "flag": False}
    assert nested.lr == 0.5 and nested.inner_name == "b"  # flat names read through


def test_unknown_key_is_one_line_error_listing_allowed():
    with pytest.raises(ValueError, match=r"^lrr: unknown Outer key; allowed: flag, inner, inner_name, lr, steps"):
        from_dict(Outer, {"lrr": 1})
    with pytest.raises(ValueError, match="^colour: unknown ReconstructConfig key; allowed: .*memory_budget"):
        ReconstructConfig(colour="red")


def test_dotted_override_converts_by_annotation():
    cfg = Outer()
    assert override(cfg, "inner.lr", "0.1").inner.lr == 0.1
    assert override(cfg, "inner.lr", "none").inner.lr is None  # Optional
    assert override(cfg, "steps", "7").steps == 7
    assert override(cfg, "inner.flag", "true").inner.flag is True and override(cfg, "flag", "no").inner.flag is False
    assert cfg == Outer()  # overrides copy
    with pytest.raises(ValueError, match="^steps: must be an int, got 'x'"):
        override(cfg, "steps", "x")
    with pytest.raises(ValueError, match="^inner.flag: must be true or false"):
        override(cfg, "flag", "maybe")
    r = override(ReconstructConfig(), "attack.lr", "0.1")
    assert r.attack.first_order.lr == 0.1 and isinstance(r.attack.first_order.lr, float)
    assert override(r, "scale.x64", "1").scale.x64 is True and override(r, "model.p", "80").model.p == 80


def test_frozen():
    cfg = ReconstructConfig(d=10, n=4, p=800, steps=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.attack.steps = 1
    assert hash(cfg) == hash(ReconstructConfig(d=10, n=4, p=800, steps=50))


def test_generated_flags_dotted_and_legacy():
    parser = argparse.ArgumentParser()
    add_arguments(parser, ReconstructConfig)
    options = {s for a in parser._actions for s in a.option_strings}
    legacy = {"--d", "--n", "--p", "--p-over-dn", "--seeds", "--seed", "--steps", "--method", "--optimizer", "--lr",
              "--activation", "--block-size", "--memory-budget", "--precision", "--shards", "--seed-shards",
              "--ridge", "--noise", "--data", "--data-dir", "--data-classes", "--image-size", "--model", "--width",
              "--classes", "--train", "--train-steps", "--train-lr", "--x64", "--chunk"}
    assert legacy <= options
    assert {"--attack.lr", "--model.p_over_dn", "--scale.memory_budget", "--data.name", "--model.name"} <= options
    base = ReconstructConfig(n=7)
    args = parser.parse_args(["--attack.lr", "0.1", "--p-over-dn", "3", "--data", "digits", "--x64"])
    cfg = from_args(ReconstructConfig, args, base)
    assert cfg == base.replace(lr=0.1, p_over_dn=3.0, data="digits", x64=True)  # flags not given keep base
    assert from_args(ReconstructConfig, parser.parse_args([])) == ReconstructConfig()
    text = parser.format_help()
    assert text.count("(default: 10000)") == 1 and "(default: None)" not in text


def test_resolve_returns_new_config_with_defaults_in_one_place():
    cfg = ReconstructConfig(n=4, p_over_dn=2)
    r = cfg.resolve()
    assert cfg.data.d is None and cfg.model.p is None  # not mutated
    assert (r.data.d, r.model.p, r.model.p_over_dn, r.attack.seeds) == (100, 800, 2.0, 4)
    assert r.resolve() == r
    assert ReconstructConfig(model="resnet", n=1, width=2).resolve().data.d == 3072
    assert ReconstructConfig(data="digits", n=4, p=10).resolve().data.d == 64
    net = ReconstructConfig(model="two_layer", d=6, n=2, classes=2, p_over_dn=5).resolve()
    assert (net.model.width, net.model.p) == (30, 60) and net.resolve() == net
    with pytest.raises(ValueError, match="^p: give only one of --p and --p-over-dn"):
        ReconstructConfig(n=4, p=10, p_over_dn=2).resolve()


def test_x64_context_and_run_refuses_x64_without_it():
    before = bool(jax.config.jax_enable_x64)
    with x64(False):
        assert not jax.config.jax_enable_x64
        with pytest.raises(ValueError, match="^x64: float64 is not enabled"):
            run_reconstruction(ReconstructConfig(d=4, n=2, p=50, x64=True), progress=False, log=None)
        with x64():
            assert jax.config.jax_enable_x64
        assert not jax.config.jax_enable_x64
    assert bool(jax.config.jax_enable_x64) == before


@dataclasses.dataclass(frozen=True)
class Axes:
    """grid axes"""

    d: tuple[int, ...] = option((20,), "input dimensions")
    ratio: Optional[tuple[float, ...]] = option(None, "ratios")
    act: tuple[str, ...] = option(("relu",), "activations")


@dataclasses.dataclass(frozen=True, init=False)
class Grid(Config):
    axes: Axes = section(Axes)
    on: bool = option(False, "a switch")


def test_tuple_leaves_parse_comma_separated_values():
    assert Grid(d="10, 20", ratio="0.5,1", act="relu,tanh").axes == Axes(d=(10, 20), ratio=(0.5, 1.0),
                                                                          act=("relu", "tanh"))
    assert Grid(d=[10, 20]).axes.d == (10, 20)  # lists become tuples: the config stays hashable
    assert override(Grid(), "axes.ratio", "none").axes.ratio is None
    assert override(Grid(), "d", "").axes.d == ()  # empty: the config's own check refuses it
    with pytest.raises(ValueError, match="^axes.d: must be a comma-separated list of int, got '1,x'"):
        Grid(d="1,x")
    parser = argparse.ArgumentParser()
    add_arguments(parser, Grid)
    args = parser.parse_args(["--d", "10,20", "--axes.ratio", "0.5,1,2", "--act", "tanh"])
    assert from_args(Grid, args).axes == Axes(d=(10, 20), ratio=(0.5, 1.0, 2.0), act=("tanh",))
    assert "(default: 20)" in parser.format_help() and "(default: relu)" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--d", "1,x"])


def test_switches_have_a_negative_and_flags_keep_the_base():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Grid)
    base = Grid(on=True, d=[3])
    assert from_args(Grid, parser.parse_args(["--no-on"]), base) == Grid(on=False, d=[3])
    assert from_args(Grid, parser.parse_args(["--on", "--ratio", "2"]), Grid(d=[3])) == Grid(on=True, d=[3], ratio=[2.0])
    # setting one leaf of a section keeps the section's other leaves
    cfg = ReconstructConfig(n=7, d=5)
    assert cfg.replace(data="digits").data.n == 7 and override(cfg, "noise", "0.1").data.d == 5


def test_attack_flags_override_the_method():
    m = ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split", cg_iters=12, cg_tol=0.2, switch_after=50,
                          precision_tol=1e-8).method_cfg()
    assert (m.lm.cg_iters, m.lm.cg_tol, m.first_order.switch_after, m.stop.precision_tol, m.start.kind) == (12, 0.2, 50, 1e-8,
                                                                                                   "split")
    assert ReconstructConfig(n=4, p_over_dn=2).method_cfg().lm.cg_iters == 30  # the default untouched
    with pytest.raises(ValueError, match="^lm.cg_iters: method 'adam' has no LM phase"):
        ReconstructConfig(n=4, p_over_dn=2, method="adam", cg_iters=5).method_cfg()
    # the plateau hand-over: adam-lm-split's default, another window, or off (0)
    split = lambda **kw: ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split", **kw).method_cfg().first_order
    assert split().switch_plateau == 20 and split(switch_plateau=7).switch_plateau == 7
    assert split(switch_plateau=0).switch_plateau is None
    assert ReconstructConfig(n=4, p_over_dn=2, method="adam-lm").method_cfg().first_order.switch_plateau is None
    with pytest.raises(ValueError, match="^switch_plateau: must be an int >= 0"):
        ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split", switch_plateau=-1).method_cfg()
    # the LM plateau stall: adam-lm-split's default, another window, or off (0), in both stages' LM
    lm = lambda **kw: ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split", **kw).method_cfg()
    assert lm().lm.stall_plateau == 8 and lm(stall_plateau=3).lm.stall_plateau == 3
    assert lm(stall_plateau=0).lm.stall_plateau is None
    off = lm(stall_plateau=0, split_cg_tol=0.1)
    assert off.start.split.lm.stall_plateau is None and off.start.split.lm.cg_tol == 0.1
    assert lm(stall_plateau=3, split_cg_tol=0.1).start.split.lm.stall_plateau == 3
    assert ReconstructConfig(n=4, p_over_dn=2, method="adam-lm").method_cfg().lm.stall_plateau is None
    with pytest.raises(ValueError, match="^stall_plateau: must be an int >= 0"):
        ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split", stall_plateau=-2).method_cfg()
    with pytest.raises(ValueError, match="^lm.stall_plateau: method 'adam' has no LM phase"):
        ReconstructConfig(n=4, p_over_dn=2, method="adam", stall_plateau=3).method_cfg()


def test_every_method_option_has_one_dotted_name_in_python_the_cli_and_configs():
    """Each option of jaxrecon.attack.options reaches the Method the same way from a reconstruct config
    (nested dict), a dotted override, the command line, and method_config (dotted and as a section)."""
    import argparse
    import warnings

    from jaxrecon.attack import method_config
    from jaxrecon.attack.options import SPEC, names
    from jaxrecon.config import add_arguments, from_args

    samples = {int: 7, float: 0.25, str: None, bool: False}
    parser = argparse.ArgumentParser()
    add_arguments(parser, ReconstructConfig)
    for name in names():
        tp, _, choices = SPEC[name]
        value = choices[0] if choices else samples[tp]
        value = {"first_order.optimizer": "rmsprop", "start.kind": "pursuit", "first_order.schedule": "exponential",
                 "start.init": "gaussian", "loss.form": "kernel", "stall.actions": "restart",
                 "stall.repair_pairs": False, "stop.floor_factor": 2.5, "stop.plateau_rtol": 0.25,
                 "first_order.switch_rtol": 0.25, "lm.stall_rtol": 0.25, "population.cull": 0.25,
                 "population.size": 3, "population.round_steps": 7}.get(name, value)
        if name.startswith("start.split"):
            continue  # needs the split start: checked below
        given = {name: value, **({"start.candidate_steps": 5} if name == "start.candidates" else {})}
        nested = {}
        for key, v in given.items():
            *parents, leaf = key.split(".")
            node = nested
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = v
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the dotted spellings are not deprecated
            by_python = method_config("adam-lm", **given)
            by_section = method_config("adam-lm", **nested)
            by_config = ReconstructConfig(n=4, p_over_dn=2, method="adam-lm", attack=nested).method_cfg()
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if tp is bool:
                text = "false"
            extra = ["--attack.start.candidate_steps", "5"] if name == "start.candidates" else []
            by_cli = from_args(ReconstructConfig, parser.parse_args(
                ["--method", "adam-lm", "--n", "4", f"--attack.{name}", text] + extra)).method_cfg()
        assert by_python == by_section == by_config == by_cli, name
        assert by_python != method_config("adam-lm"), name  # every value above differs from adam-lm's
    split = ReconstructConfig(n=4, p_over_dn=2, method="adam-lm-split",
                              attack={"start": {"split": {"features": 3.0, "lm": {"cg_iters": 9}}}}).method_cfg()
    assert split.start.split.features == 3.0 and split.start.split.lm.cg_iters == 9


def test_unknown_and_legacy_method_options():
    import warnings

    from jaxrecon.attack import method_config

    with pytest.raises(ValueError, match=r"^method options: unknown option 'lm.cg_iter' \(did you mean"):
        method_config("adam-lm", lm={"cg_iter": 3})
    with pytest.warns(DeprecationWarning, match="cg_iters -> lm.cg_iters"):
        assert method_config("adam-lm", cg_iters=11).lm.cg_iters == 11
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert method_config("adam-lm", lm={"cg_iters": 11}) == method_config("adam-lm", **{"lm.cg_iters": 11})
    with pytest.raises(ValueError, match="^cg_iter: unknown attack.lm key; allowed: cg_iters, "):
        ReconstructConfig(attack={"lm": {"cg_iter": 3}})


def test_published_uses_the_papers_lr_on_images_and_networks():
    """The paper's released code runs its recipe at lr 20 on synthetic data and 2000 on images and
    networks; a given --lr wins."""
    from jaxrecon.runner import ReconstructConfig

    lr = lambda **kw: ReconstructConfig(method="published", n=4, p_over_dn=2, **kw).method_cfg().first_order.lr
    assert lr() == 20.0 and lr(data="photos16") == 2000.0 and lr(model="two_layer") == 2000.0
    assert lr(data="photos16", lr=5.0) == 5.0
    # the same rule serves network sweeps (jaxrecon.sweeps.networks)
    from jaxrecon.attack import method_config
    from jaxrecon.attack.methods import paper_lr

    pub = method_config("published")
    assert paper_lr(pub, "published", {}, True).first_order.lr == 2000.0
    assert paper_lr(pub, "published", {"first_order.lr": 20.0}, True) is pub
    assert paper_lr(method_config("adam"), "adam", {}, True).first_order.lr == method_config("adam").first_order.lr
