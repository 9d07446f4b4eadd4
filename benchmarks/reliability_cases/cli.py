"""Reliability cases of the command line: every flag of ``jaxrecon reconstruct`` and ``jaxrecon sweep``
with bad values, bad config files, bad resume states, ``--out`` cases and ``jaxrecon plot`` on bad
directories. Most fail before any attack; a few run a tiny problem (``--d 4 --n 2 --p 64 --seeds 1
--steps 50``) or resume a crafted, already finished sweep (nothing left to run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from ._case import Case, command

AREA = "cli"
# a real run of RECON takes seconds on an idle CPU; cases running one allow 600 s for a busy machine
RECON = ("reconstruct", "--d", "4", "--n", "2", "--p", "64", "--seeds", "1", "--steps", "50", "--quiet")
RECON_OUT = RECON + ("--out", "{dir}/run")
SWEEP = ("sweep", "--d", "4", "--n", "2", "--p", "64", "--seeds", "1", "--steps", "50", "--quiet", "--no-plot",
         "--bootstrap", "0")
SWEEP_OUT = SWEEP + ("--out", "{dir}/sw")

# A tiny finished sweep, crafted (no attack): d=4, n=2, p in (8, 64), 2 seeds.
GRID = {"name": "tiny", "d": [4], "n": [2], "p": [8, 64], "seeds": 2, "steps": 50}


def _row(p, seed, d=4, n=2, error=0.5, method=None):
    from jaxrecon.attack import DEFAULT_METHOD

    return {"d": d, "n": n, "p": p, "p_over_dn": p / (d * n), "activation": "relu",
            "method": method or DEFAULT_METHOD, "seed": seed, "train_loss": 0.1, "loss": 1e-3,
            "error_abs": error, "error_sign": error, "residual": 0.1, "recovered": 0, "steps": 50,
            "status": "budget", "seconds": 0.1, "compile_seconds": 0.1}


def _finished_sweep(extra_rows=(), config=GRID, rows=None, meta=True, text_tail=""):
    """A setup writing ``cfg.json`` and a finished sweep of it in ``sw/`` (plus ``extra_rows``)."""

    def setup(workdir: Path):
        from jaxrecon.sweeps import grid, load_config
        from jaxrecon.sweeps.store import _HEADER, _check_meta, rows_text

        (workdir / "cfg.json").write_text(json.dumps(config))
        resolved = load_config(workdir / "cfg.json").resolved()
        out = workdir / "sw"
        out.mkdir()
        if meta:
            _check_meta(out, resolved, grid(resolved))
        body = rows if rows is not None else [_row(p, s) for p in config["p"] for s in range(config["seeds"])]
        (out / "results.csv").write_text(_HEADER + rows_text(list(body) + list(extra_rows)) + text_tail)

    return setup


RESUME = ("sweep", "{dir}/cfg.json", "--out", "{dir}/sw", "--quiet", "--no-plot", "--bootstrap", "0")


def _write(rel: str, text: str):
    def setup(workdir: Path):
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return setup


def _all(*setups):
    def setup(workdir: Path):
        for s in setups:
            s(workdir)
    return setup


def _rejected(count: int):
    def check(workdir: Path, proc):
        f = workdir / "sw" / "rejected_rows.csv"
        if not f.is_file():
            return "rejected rows not kept in rejected_rows.csv"
        lines = f.read_text().splitlines()
        if len(lines) != count + 1:
            return f"rejected_rows.csv holds {len(lines) - 1} rows, expected {count}"
        said = proc.stdout + proc.stderr
        if "rejected_rows.csv" not in said or f"{count} row" not in said:
            return "no warning naming the count and rejected_rows.csv"
        kept = (workdir / "sw" / "results.csv").read_text().splitlines()
        if len(kept) != 1 + 4:
            return f"results.csv holds {len(kept) - 1} rows, expected 4"
        return None
    return check


def _unchanged(rel: str, text: str):
    def check(workdir: Path, proc):
        path = workdir / rel
        if not path.is_file() or path.read_text() != text:
            return f"{rel} was changed"
        return None
    return check


def _no_lock(rel: str = "sw/.lock"):
    def check(workdir: Path, proc):
        return f"{rel} left behind" if (workdir / rel).exists() else None
    return check


def _no_outside(workdir: Path, proc):
    outside = [p for p in (workdir.parent / "x", workdir.parent.parent / "x") if p.exists()]
    return f"wrote outside runs/: {outside}" if outside else None


def _recon_flag(name, flag, value, mention=None, extra=()):
    return Case(f"reconstruct-{name}", AREA, RECON_OUT + tuple(extra) + (flag, value),
                mention=(mention or flag,), forbid=("run",))


def _sweep_flag(name, flag, value, mention=None, extra=()):
    return Case(f"sweep-{name}", AREA, SWEEP_OUT + tuple(extra) + (flag, value), mention=(mention or flag,),
                forbid=("sw",))


# -- reconstruct flags --------------------------------------------------------------------------------

_RECON_FLAGS = [
    ("d-zero", "--d", "0"), ("d-negative", "--d", "-3"), ("d-text", "--d", "abc"), ("d-float", "--d", "4.5"),
    ("n-zero", "--n", "0"), ("n-negative", "--n", "-1"),
    ("p-zero", "--p", "0"), ("p-negative", "--p", "-64"), ("p-inf", "--p", "inf"),
    ("seed-negative", "--seed", "-1"),
    ("noise-negative", "--noise", "-1"), ("noise-nan", "--noise", "nan"), ("noise-inf", "--noise", "inf"),
    ("ridge-negative", "--ridge", "-1"), ("ridge-nan", "--ridge", "nan"),
    ("activation-unknown", "--activation", "nope"), ("model-unknown", "--model", "nope"),
    ("train-unknown", "--train", "nope"), ("method-unknown", "--method", "nope"),
    ("optimizer-unknown", "--optimizer", "nope"),
    ("lr-zero", "--lr", "0"), ("lr-negative", "--lr", "-0.1"), ("lr-nan", "--lr", "nan"), ("lr-inf", "--lr", "inf"),
    ("start-unknown", "--start", "nope"),
    ("steps-zero", "--steps", "0"), ("steps-negative", "--steps", "-5"), ("steps-text", "--steps", "many"),
    ("switch-after-negative", "--switch-after", "-5"), ("switch-plateau-negative", "--switch-plateau", "-1"),
    ("stall-plateau-negative", "--stall-plateau", "-1"), ("cg-iters-zero", "--cg-iters", "0"),
    ("split-cg-iters-zero", "--split-cg-iters", "0"), ("split-cg-tol-nan", "--split-cg-tol", "nan"),
    ("split-features-negative", "--split-features", "-1"), ("cg-tol-negative", "--cg-tol", "-1"),
    ("precision-tol-nan", "--precision-tol", "nan"), ("seeds-zero", "--seeds", "0"),
    ("chunk-zero", "--chunk", "0"), ("chunk-negative", "--chunk", "-10"),
    ("block-size-zero", "--block-size", "0"), ("memory-budget-text", "--memory-budget", "lots"),
    ("memory-budget-negative", "--memory-budget", "-1"), ("precision-unknown", "--precision", "nope"),
    ("shards-zero", "--shards", "0"), ("seed-shards-zero", "--seed-shards", "0"),
    ("theta-noise-nan", "--theta-noise", "nan"), ("theta-noise-negative", "--theta-noise", "-1"),
    ("theta-noise-inf", "--theta-noise", "inf"),
    ("dp-epsilon-zero", "--dp-epsilon", "0"), ("dp-epsilon-nan", "--dp-epsilon", "nan"),
    ("label-noise-negative", "--label-noise", "-1"), ("early-stop-steps-zero", "--early-stop-steps", "0"),
    ("quantize-unknown", "--quantize", "int4"), ("prune-over-one", "--prune", "1.5"), ("prune-nan", "--prune", "nan"),
    ("data-unknown", "--data", "nope"),
    ("dotted-switch-after", "--attack.switch_after", "-5"), ("dotted-lr", "--attack.lr", "nan"),
]

CASES = [_recon_flag(n, f, v) for n, f, v in _RECON_FLAGS]
CASES += [
    Case("reconstruct-p-over-dn-zero", AREA, tuple(a for a in RECON_OUT if a not in ("--p", "64"))
         + ("--p-over-dn", "0"), mention=("--p-over-dn",), forbid=("run",)),
    _recon_flag("dp-delta-over-one", "--dp-delta", "2", extra=("--dp-epsilon", "1")),
    _recon_flag("dp-delta-nan", "--dp-delta", "nan", extra=("--dp-epsilon", "1")),
    _recon_flag("width-zero", "--width", "0", extra=("--model", "two_layer")),
    _recon_flag("classes-zero", "--classes", "0", extra=("--model", "two_layer")),
    _recon_flag("train-steps-zero", "--train-steps", "0", extra=("--model", "two_layer")),
    _recon_flag("train-lr-nan", "--train-lr", "nan", extra=("--model", "two_layer")),
    _recon_flag("image-size-zero", "--image-size", "0", extra=("--data", "digits")),
    Case("reconstruct-data-dir-missing", AREA, ("reconstruct", "--data", "cifar10", "--data-dir", "{dir}/nowhere",
                                                 "--n", "2", "--p-over-dn", "2", "--quiet", "--out", "{dir}/run"),
         mention=("nowhere",), forbid=("run",)),
    Case("reconstruct-data-dir-empty", AREA, ("reconstruct", "--data", "cifar10", "--data-dir", "", "--n", "2",
                                              "--p-over-dn", "2", "--quiet", "--out", "{dir}/run"),
         mention=("--data-dir",), forbid=("run",)),
    Case("reconstruct-unknown-flag", AREA, RECON_OUT + ("--nope", "1"), mention=("--nope",), forbid=("run",)),
    Case("reconstruct-missing-value", AREA, RECON_OUT + ("--steps",), mention=("--steps",), forbid=("run",)),
    Case("reconstruct-x64-with-value", AREA, RECON_OUT + ("--x64", "yes"), mention=("yes",), forbid=("run",)),
    Case("reconstruct-p-and-p-over-dn", AREA, RECON_OUT + ("--p-over-dn", "2"), mention=("--p",), forbid=("run",)),
    Case("reconstruct-out-and-no-save", AREA, RECON_OUT + ("--no-save",), mention=("--no-save",), forbid=("run",)),
    # --out
    Case("reconstruct-out-empty", AREA, RECON + ("--out", ""), mention=("--out",), forbid=("runs",)),
    Case("reconstruct-out-is-file", AREA, RECON + ("--out", "{dir}/f"), setup=_write("f", "x"), mention=("f",)),
    Case("reconstruct-out-earlier-run", AREA, RECON_OUT, setup=_write("run/summary.json", '{"earlier": 1}'),
         mention=("run", "--overwrite"), check=_unchanged("run/summary.json", '{"earlier": 1}')),
    Case("reconstruct-out-earlier-arrays", AREA, RECON_OUT, setup=_write("run/arrays.npz", "earlier"),
         mention=("run", "--overwrite"), check=_unchanged("run/arrays.npz", "earlier")),
    Case("reconstruct-out-sweep-dir", AREA, RECON_OUT, setup=_write("run/sweep.json", "{}"),
         mention=("run",), check=_unchanged("run/sweep.json", "{}")),
    Case("reconstruct-overwrite", AREA, RECON_OUT + ("--overwrite",), expect="ok", timeout=600,
         setup=_write("run/summary.json", '{"earlier": 1}'),
         check=lambda w, p: None if "config" in json.loads((w / "run/summary.json").read_text())
         else "summary.json not replaced"),
    Case("reconstruct-out-new-ok", AREA, RECON_OUT, expect="ok", timeout=600,
         check=lambda w, p: None if (w / "run/summary.json").is_file() else "no summary.json"),
    Case("reconstruct-out-empty-dir-ok", AREA, RECON_OUT, expect="ok", timeout=600, setup=lambda w: (w / "run").mkdir(),
         check=lambda w, p: None if (w / "run/summary.json").is_file() else "no summary.json"),
]

# -- sweep flags --------------------------------------------------------------------------------------

_SWEEP_FLAGS = [
    ("d-zero", "--d", "0"), ("d-list-negative", "--d", "4,-1"), ("d-text", "--d", "abc"),
    ("n-zero", "--n", "0"), ("p-zero", "--p", "0"), ("p-nan", "--p", "nan"),
    ("activation-unknown", "--activation", "nope"), ("method-unknown", "--method", "nope"),
    ("noise-nan", "--noise", "nan"), ("noise-negative", "--noise", "-1"), ("ridge-negative", "--ridge", "-1"),
    ("seeds-zero", "--seeds", "0"), ("seed-negative", "--seed", "-2"), ("steps-zero", "--steps", "0"),
    ("steps-inf", "--steps", "inf"), ("optimizer-unknown", "--optimizer", "nope"), ("lr-nan", "--lr", "nan"),
    ("lr-negative", "--lr", "-1"), ("planted-negative", "--planted", "-1"), ("block-size-zero", "--block-size", "0"),
    ("pad-p-unknown", "--pad-p", "nope"), ("defence-unknown", "--defence", "nope"),
    ("bootstrap-negative", "--bootstrap", "-1"), ("bootstrap-text", "--bootstrap", "many"),
    ("dotted-steps", "--attack.steps", "0"), ("name-empty", "--name", ""),
]
CASES += [_sweep_flag(n, f, v) for n, f, v in _SWEEP_FLAGS]
SWEEP_NO_P = tuple(a for a in SWEEP_OUT if a not in ("--p", "64"))
CASES += [
    Case("sweep-p-over-n-nan", AREA, SWEEP_NO_P + ("--p-over-n", "nan"), mention=("--p-over-n",), forbid=("sw",)),
    Case("sweep-p-over-dn-negative", AREA, SWEEP_NO_P + ("--p-over-dn", "-1"), mention=("--p-over-dn",),
         forbid=("sw",)),
    Case("sweep-p-and-p-over-dn", AREA, SWEEP_OUT + ("--p-over-dn", "1"), mention=("--p",), forbid=("sw",)),
    _sweep_flag("defence-strength-alone", "--defence-strength", "0.1"),
    _sweep_flag("defence-strength-nan", "--defence-strength", "nan", extra=("--defence", "theta_noise")),
    _sweep_flag("defence-without-strength", "--defence", "theta_noise", mention="--defence-strength"),
    _sweep_flag("dp-delta-over-one", "--dp-delta", "2", extra=("--defence", "dp", "--defence-strength", "1")),
    _sweep_flag("floor-factor-below-one", "--floor-factor", "0.5",
                extra=("--defence", "theta_noise", "--defence-strength", "0.1")),
    _sweep_flag("plateau-window-negative", "--plateau-window", "-1",
                extra=("--defence", "theta_noise", "--defence-strength", "0.1")),
    Case("sweep-no-p", AREA, ("sweep", "--d", "4", "--n", "2", "--out", "{dir}/sw"), mention=("--p",),
         forbid=("sw",)),
    Case("sweep-unknown-flag", AREA, SWEEP_OUT + ("--nope",), mention=("--nope",), forbid=("sw",)),
    Case("sweep-name-escape", AREA, SWEEP + ("--name", "../../x"), mention=("name", "../../x"),
         check=_no_outside, forbid=("runs",)),
    Case("sweep-name-slash", AREA, SWEEP + ("--name", "a/b"), mention=("name",), forbid=("runs",)),
    Case("sweep-name-dotdot", AREA, SWEEP + ("--name", ".."), mention=("name",), forbid=("runs",)),
    Case("sweep-out-empty", AREA, SWEEP + ("--out", ""), mention=("--out",), forbid=("runs",)),
    Case("sweep-out-is-file", AREA, SWEEP + ("--out", "{dir}/f"), setup=_write("f", "x"), mention=("f",)),
    Case("sweep-out-reconstruct-run", AREA, SWEEP_OUT, setup=_write("sw/summary.json", '{"config": {}}'),
         mention=("sw",), check=lambda w, p: _unchanged("sw/summary.json", '{"config": {}}')(w, p)
         or _no_lock()(w, p) or (None if not (w / "sw/results.csv").exists() else "results.csv written")),
    Case("sweep-tiny-run-ok", AREA, SWEEP_OUT, expect="ok", timeout=600,
         check=lambda w, p: None if len((w / "sw/results.csv").read_text().splitlines()) == 2 else "no row"),
]

# -- config files -------------------------------------------------------------------------------------

CFG = ("sweep", "{dir}/cfg.py", "--out", "{dir}/sw", "--quiet", "--no-plot")
JCFG = ("sweep", "{dir}/cfg.json", "--out", "{dir}/sw", "--quiet", "--no-plot")
_GOOD = "def get_config():\n    return {'d': [4], 'n': [2], 'p': [64], 'seeds': 1, 'steps': 50%s}\n"


def _cfg(name, text, mention=("cfg.py",), argv=CFG, rel="cfg.py", **kw):
    return Case(f"config-{name}", AREA, argv, setup=_write(rel, text), mention=mention, forbid=("sw",), **kw)


CASES += [
    Case("config-missing", AREA, CFG, mention=("cfg.py",), forbid=("sw",)),
    Case("config-directory", AREA, CFG, setup=lambda w: (w / "cfg.py").mkdir(), mention=("cfg.py",),
         forbid=("sw",)),
    _cfg("wrong-suffix", "x", rel="cfg.txt", argv=("sweep", "{dir}/cfg.txt", "--out", "{dir}/sw"),
         mention=("cfg.txt",)),
    _cfg("syntax-error", "def get_config(:\n"),
    _cfg("import-error", "import no_such_module_xyz\n"),
    _cfg("no-get-config", "x = 1\n"),
    _cfg("get-config-raises", "def get_config():\n    raise RuntimeError('boom')\n"),
    _cfg("get-config-list", "def get_config():\n    return [1, 2]\n"),
    _cfg("unknown-key", _GOOD % ", 'stepz': 3", mention=("stepz",)),
    _cfg("wrong-type-d", (_GOOD % "").replace("'d': [4]", "'d': ['abc']"), mention=("'abc'",)),
    _cfg("bool-for-float", _GOOD % ", 'noise': True", mention=("noise", "boolean")),
    _cfg("bool-for-int", (_GOOD % "").replace("'steps': 50", "'steps': True"), mention=("steps",)),
    _cfg("sys-exit-module", "import sys\nsys.exit(0)\n"),
    _cfg("sys-exit-get-config", "import sys\ndef get_config():\n    sys.exit(3)\n"),
    _cfg("keyboard-exit", "raise SystemExit('bye')\n"),
    _cfg("name-escape", _GOOD % ", 'name': '../../x'", argv=("sweep", "{dir}/cfg.py", "--quiet", "--no-plot"),
         mention=("name", "../../x"), check=_no_outside),
    _cfg("name-absolute", _GOOD % ", 'name': '/abs/x'",
         argv=("sweep", "{dir}/cfg.py", "--quiet", "--no-plot"), mention=("name",)),
    _cfg("json-invalid", "{not json", rel="cfg.json", argv=JCFG, mention=("cfg.json",)),
    _cfg("json-array", "[1, 2]", rel="cfg.json", argv=JCFG, mention=("cfg.json",)),
    _cfg("json-true-for-float", json.dumps({"d": [4], "n": [2], "p": [64], "noise": True}), rel="cfg.json",
         argv=JCFG, mention=("noise",)),
    _cfg("json-true-for-int", json.dumps({"d": [4], "n": [2], "p": [64], "seeds": True}), rel="cfg.json",
         argv=JCFG, mention=("seeds",)),
    _cfg("json-true-for-ridge", json.dumps({"d": [4], "n": [2], "p": [64], "ridge": True}), rel="cfg.json",
         argv=JCFG, mention=("ridge",)),
    _cfg("json-true-in-grid", json.dumps({"d": [4, True], "n": [2], "p": [64]}), rel="cfg.json",
         argv=JCFG, mention=("d",)),
    _cfg("json-string-steps", json.dumps({"d": [4], "n": [2], "p": [64], "steps": "many"}), rel="cfg.json",
         argv=JCFG, mention=("steps",)),
    _cfg("json-nan-lr", '{"d": [4], "n": [2], "p": [64], "lr": NaN}', rel="cfg.json", argv=JCFG,
         mention=("lr",)),
    _cfg("json-name-escape", json.dumps({"d": [4], "n": [2], "p": [64], "name": "../../x"}), rel="cfg.json",
         argv=("sweep", "{dir}/cfg.json", "--quiet", "--no-plot"), mention=("name",), check=_no_outside),
]

# -- resume states ------------------------------------------------------------------------------------

_STRAY = [_row(999, 0), _row(999, 1)]
CASES += [
    Case("resume-finished-ok", AREA, RESUME, setup=_finished_sweep(), expect="ok"),
    Case("resume-rows-outside-grid", AREA, RESUME, setup=_finished_sweep(_STRAY), expect="ok",
         check=_rejected(2)),
    Case("resume-seed-out-of-range", AREA, RESUME, setup=_finished_sweep([_row(8, 7)]), expect="ok",
         check=_rejected(1)),
    Case("resume-other-d", AREA, RESUME, setup=_finished_sweep([_row(8, 0, d=5)]), expect="ok",
         check=_rejected(1)),
    Case("resume-other-method", AREA, RESUME, setup=_finished_sweep([_row(8, 0, method="adam")]), expect="ok",
         check=_rejected(1)),
    Case("resume-torn-last-line", AREA, RESUME, setup=_finished_sweep(text_tail="4,2,8,1.0,re"), expect="ok",
         check=lambda w, p: None if (w / "sw/results.csv").read_text().endswith("\n") else "torn line kept"),
    Case("resume-corrupted-row", AREA, RESUME, setup=_finished_sweep(text_tail="4,2,x,garbage\n"),
         mention=("results.csv",)),
    Case("resume-truncated-row", AREA, RESUME, setup=_finished_sweep(text_tail="4,2,8,1.0,relu\n"),
         mention=("results.csv",)),
    Case("resume-wrong-header", AREA, RESUME,
         setup=_all(_finished_sweep(), _write("sw/results.csv", "a,b,c\n1,2,3\n")), mention=("results.csv",)),
    Case("resume-binary-garbage", AREA, RESUME,
         setup=_all(_finished_sweep(), lambda w: (w / "sw/results.csv").write_bytes(b"\x00\xff" * 100)),
         mention=("results.csv",)),
    Case("resume-foreign-config", AREA, RESUME,
         setup=_all(_finished_sweep(), _write("cfg.json", json.dumps({**GRID, "steps": 60}))),
         mention=("sw", "steps"), check=_no_lock()),
    Case("resume-unreadable-meta", AREA, RESUME, setup=_all(_finished_sweep(), _write("sw/sweep.json", "{x")),
         mention=("sweep.json",), check=_no_lock()),
    Case("resume-results-without-meta", AREA, RESUME, setup=_finished_sweep(meta=False),
         mention=("results.csv",), check=_no_lock()),
    Case("resume-stale-lock", AREA, RESUME,
         setup=_all(_finished_sweep(), _write("sw/.lock", '{"pid": 999999, "hostname": "h", "started": "s"}')),
         expect="ok"),
    Case("resume-refused-no-lock-new-dir", AREA, SWEEP_OUT + ("--steps", "0"), forbid=("sw/.lock",),
         mention=("--steps",)),
]

# -- plot ---------------------------------------------------------------------------------------------

PLOT = ("plot", "{dir}/sw", "--bootstrap", "0")


def _never_reached(workdir: Path):
    from jaxrecon.sweeps.store import _HEADER, rows_text

    out = workdir / "sw"
    out.mkdir()
    rows = [_row(p, s, d=d, n=n, error=0.5) for d, n in ((4, 2), (6, 3)) for p in (8, 64) for s in range(2)]
    (out / "results.csv").write_text(_HEADER + rows_text(rows))


def _concurrent_plots(workdir: Path):
    _finished_sweep()(workdir)
    env = {**os.environ, "JAXRECON_CACHE_DIR": "off"}
    procs = [subprocess.Popen(command() + ["plot", str(workdir / "sw"), "--bootstrap", "0"], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    bad = [(p.returncode, e.strip().splitlines()[-1:]) for p, (o, e) in zip(procs, outs) if p.returncode != 0]
    if any("Traceback" in e for _, e in outs):
        return "bad", "traceback"
    if bad:
        return "misleading", f"concurrent plots failed: {bad}"
    left = [f.name for f in (workdir / "sw").iterdir() if f.name.startswith(".") or f.name.endswith(".tmp")]
    if left:
        return "misleading", f"temporary files left: {left}"
    return "clean", "3 concurrent plots exit 0"


CASES += [
    Case("plot-missing-dir", AREA, PLOT, mention=("sw",)),
    Case("plot-empty-dir", AREA, PLOT, setup=lambda w: (w / "sw").mkdir(), mention=("sw",)),
    Case("plot-header-only", AREA, PLOT, setup=_all(_finished_sweep(rows=[]),), mention=("sw",)),
    Case("plot-reconstruct-dir", AREA, PLOT, setup=_write("sw/summary.json", "{}"), mention=("sw",)),
    Case("plot-corrupted", AREA, PLOT, setup=_finished_sweep(text_tail="garbage\n"), mention=("results.csv",)),
    Case("plot-bootstrap-negative", AREA, PLOT[:2] + ("--bootstrap", "-1"), setup=_finished_sweep(),
         mention=("--bootstrap",)),
    Case("plot-out-is-file", AREA, PLOT + ("--out", "{dir}/f"), setup=_all(_finished_sweep(), _write("f", "x")),
         mention=("f",)),
    Case("plot-out-empty", AREA, PLOT + ("--out", ""), setup=_finished_sweep(), mention=("--out",)),
    Case("plot-ok", AREA, PLOT, setup=_finished_sweep(), expect="ok",
         check=lambda w, p: None if (w / "sw/law.png").is_file() else "no law.png"),
    Case("plot-threshold-never-reached", AREA, PLOT, setup=_never_reached, expect="ok",
         check=lambda w, p: None if (w / "sw/finite_size.png").is_file() and "no threshold" in p.stdout + p.stderr
         else "finite_size.png missing or no word that no threshold was reached"),
    Case("plot-concurrent", AREA, run=_concurrent_plots),
]


# -- signals and full disk ----------------------------------------------------------------------------

def _double_sigterm(workdir: Path):
    """Two SIGTERMs milliseconds apart (GNU timeout's two copies): the run stops and saves."""
    env = {**os.environ, "JAXRECON_CACHE_DIR": "off", "PYTHONUNBUFFERED": "1"}
    argv = ["reconstruct", "--d", "10", "--n", "4", "--p", "20", "--method", "adam", "--steps", "100000000",
            "--chunk", "20", "--out", str(workdir / "run")]
    p = subprocess.Popen(command() + argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    for line in p.stderr:  # the attack runs
        if "step " in line:
            break
    p.send_signal(signal.SIGTERM)
    for line in p.stderr:  # the first is handled (two sent at once may merge into one delivery)
        if "stopping after" in line:
            break
    p.send_signal(signal.SIGTERM)  # its copy, milliseconds later
    try:
        out, err = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill()
        return "bad", "no exit 300 s after two SIGTERMs"
    if "Traceback" in err:
        return "bad", "traceback"
    if p.returncode != 143:
        return "misleading", f"exit {p.returncode} after two SIGTERMs"
    if not (workdir / "run" / "summary.json").is_file():
        return "misleading", "nothing saved after two SIGTERMs a few ms apart"
    return "clean", "exit 143, summary.json saved"


def _limited(argv, limit, setup=None):
    """Run ``argv`` with files limited to ``limit`` bytes (RLIMIT_FSIZE: a write past it fails
    with EFBIG, no file name, as on a full disk); ``limit`` may be ``f(workdir)``."""
    def run(workdir: Path):
        import resource

        if setup is not None:
            setup(workdir)
        size = limit(workdir) if callable(limit) else limit
        env = {**os.environ, "JAXRECON_CACHE_DIR": "off"}
        argv2 = [a.replace("{dir}", str(workdir)) for a in argv]
        p = subprocess.run(command() + argv2, cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size)))
        said = [line for line in p.stderr.splitlines() if line.startswith("jaxrecon:")]
        if "Traceback" in p.stderr or p.returncode < 0:
            return "bad", f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"
        if p.returncode == 0:
            return "misleading", "exit 0 when files could not be written"
        if not said or str(workdir) not in said[-1]:
            return "misleading", f"the error names no path: {said[-1:] or p.stderr[-200:]}"
        left = [str(f) for f in workdir.rglob("*.tmp")]
        if left:
            return "misleading", f"temporary files left: {left}"
        return "clean", said[-1][:200]
    return run


CASES += [
    Case("signal-double-sigterm", AREA, run=_double_sigterm),
    Case("disk-full-reconstruct", AREA, run=_limited(RECON_OUT, 1500)),
    Case("disk-full-sweep", AREA, run=_limited(SWEEP_OUT, 400)),  # sweep.json cannot be written
    # resuming: the row of the point left cannot be appended to results.csv
    Case("disk-full-sweep-append", AREA, run=_limited(
        RESUME, lambda w: (w / "sw" / "results.csv").stat().st_size + 20,
        setup=_finished_sweep(rows=[_row(8, s) for s in range(2)]))),
    Case("disk-full-plot", AREA, run=_limited(PLOT, 3000, setup=_finished_sweep())),
]
