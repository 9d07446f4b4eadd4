"""The ``jaxrecon`` command.

Errors in the user's input print one line (``jaxrecon: error: ...``) naming the flag as the user
typed it (:func:`user_names`: a library's internal name, e.g. ``first_steps``, becomes
``--switch-after``) and exit with status 2; file-system errors (read-only or full disk) one line
naming the path and the reason, status 1.
A first Ctrl-C or SIGTERM stops the run after its current chunk (or grid point) and saves what is
done, exiting 130 or 143; a second quits at once (:mod:`jaxrecon.signals`). Compiled programs are
kept in JAX's persistent cache (:mod:`jaxrecon.cache`; ``JAXRECON_CACHE_DIR=off`` disables it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from pathlib import Path

from ._version import __version__


# -- help -----------------------------------------------------------------------------------------
#
# ``--help`` lists every option by section, its short spelling first (``--lr LR, --attack.first_order.lr``);
# the attack's part options (first_order.*, lm.*, start.*, ...) other than BRIEF_ATTACK parse as
# usual but are listed by ``--help-attack`` only.

#: Attack options of the parts that ``--help`` lists (the rest: ``--help-attack``).
BRIEF_ATTACK = ("attack.first_order.optimizer", "attack.first_order.lr", "attack.start.kind")


def _attack_detail(leaf) -> bool:
    return leaf.path[0] == "attack" and len(leaf.path) > 2 and leaf.dotted not in BRIEF_ATTACK


class HelpFormatter(argparse.HelpFormatter):
    """Options as ``--short METAVAR, --section.field``: the spellings without a dot first, the
    metavar once."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        spellings = sorted(action.option_strings, key=lambda s: "." in s)  # stable: short ones first
        if action.nargs == 0:
            return ", ".join(spellings)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join([f"{spellings[0]} {metavar}", *spellings[1:]])


class _AttackHelp(argparse.Action):
    """``--help-attack``: every option of the attack's parts, by part, then exit."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        import copy

        from .config import section_doc

        formatter = parser._get_formatter()  # noqa: SLF001
        formatter.add_usage(parser.usage, [], [])
        formatter.add_text("Options of the attack's parts, each by its short spelling, its dotted name "
                           "--attack.PART.OPTION and the older --attack.OPTION; given, they override the "
                           "method's settings (a method's own: jaxrecon.attack.method_config(NAME)).")
        by_part = {}
        for leaf, action in parser.detail_actions:
            by_part.setdefault(leaf.path[1:-1], []).append((leaf, action))
        for part, items in by_part.items():
            formatter.start_section(f"attack.{'.'.join(part)}")
            formatter.add_text(section_doc(parser.config_class, ("attack", *part)))
            shown = []
            for _, action in items:
                shown.append(copy.copy(action))
                shown[-1].help = action.detail_help
            formatter.add_arguments(shown)
            formatter.end_section()
        parser._print_message(formatter.format_help(), sys.stdout)  # noqa: SLF001
        parser.exit()


def _add_config_arguments(p, cls) -> None:
    """The flags of config ``cls`` on ``p``, the attack's part options summarised (``--help-attack``)."""
    from .config import add_arguments

    add_arguments(p, cls, details=_attack_detail)
    p.config_class = cls
    group = p.config_groups.get("attack")
    if group is not None and p.detail_actions:
        parts = ", ".join(dict.fromkeys(f"{leaf.path[1]}.*" for leaf, _ in p.detail_actions))
        group.description = (f"{group.description}, and the common options of its parts; the other "
                             f"{len(p.detail_actions)} ({parts}) are listed by --help-attack")
        group.add_argument("--help-attack", action=_AttackHelp,
                           help="list every option of the attack's parts and exit")


def _add_reconstruct(sub):
    from .config import leaves
    from .distributed import add_process_arguments
    from .runner.config import ReconstructConfig

    p = sub.add_parser(
        "reconstruct", help="fit a model on synthetic data and reconstruct its training set",
        usage="%(prog)s [options]", formatter_class=HelpFormatter,
        description="Fit a random-features model on n points of the sphere in R^d, then recover the "
                    "training inputs from its parameters with the projector-loss attack, for several "
                    "attack seeds vmapped in one compiled program. Every setting has a flag "
                    "--section.field (e.g. --attack.lr) and its short spelling (--lr).",
    )
    _add_config_arguments(p, ReconstructConfig)
    p.config_dests = {l.dotted for l in leaves(ReconstructConfig)}  # the flags of config fields
    save = p.add_mutually_exclusive_group()
    save.add_argument("--out", default=None,
                      help="directory for summary.json and arrays.npz (default: runs/reconstruct-<date>-<time>)")
    save.add_argument("--no-save", action="store_true", help="print the results only; write no files")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in --out (refused without it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_process_arguments(p)
    p.set_defaults(func=_cmd_reconstruct, stops_after="chunk")


def _process_index() -> int:
    from .distributed import process_index

    return process_index()


def default_run_dir(command: str = "reconstruct", root: str = "runs") -> str:
    """``runs/<command>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... when taken)."""
    base = os.path.join(root, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, k = base, 1
    while os.path.exists(path):
        k += 1
        path = f"{base}-{k}"
    return path


def _cmd_reconstruct(args):
    from .config import from_args, x64
    from .distributed import flags_from_args, initialize
    from .runner import ReconstructConfig, run_reconstruction
    from .signals import current_request

    # every process runs the same program; process 0 alone prints and writes the files
    lead = not initialize(flags_from_args(args), log=print) or _process_index() == 0
    cfg = from_args(ReconstructConfig, args)
    out = None if args.no_save or not lead else (args.out or default_run_dir())
    if out is not None:
        args.out_dir = out  # named by a file-system error that names no file
        check_run_dir(out, args.overwrite)
    with x64() if cfg.scale.x64 else contextlib.nullcontext():
        summary = run_reconstruction(cfg, out=out, progress=not args.quiet and lead, log=print if lead else None)
    if not lead:
        return 0
    if out is not None and args.overwrite and "images" not in summary:  # the earlier run's figure is stale
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out, "recon.png"))
    files = "summary.json and arrays.npz" + (" and recon.png" if "images" in summary else "")
    interrupted = [r["seed"] for r in summary["results"] if r["status"] == "interrupted"]
    request = current_request()
    if interrupted or (request is not None and request.signum is not None):
        finished = len(summary["results"]) - len(interrupted)
        where = f"wrote {out}/{files}" if out else "nothing written (--no-save)"
        print(f"jaxrecon: interrupted: {finished} seed(s) finished, {len(interrupted)} interrupted; {where}",
              file=sys.stderr)
        return request.exit_code if request is not None and request.exit_code else 130
    print(f"wrote {out}/{files}" if out else "results not saved (--no-save)")
    return 0


#: Files of a ``reconstruct`` run, and of a sweep: ``reconstruct --out DIR`` refuses a DIR holding either.
RUN_FILES = ("summary.json", "arrays.npz", "recon.png")
SWEEP_FILES = ("sweep.json", "results.csv")


def check_run_dir(out, overwrite: bool = False) -> None:
    """Refuse ``reconstruct --out DIR`` where ``DIR`` holds a sweep, or an earlier run (unless
    ``overwrite``): one-line ``ValueError`` saying how to proceed, before any work."""
    path = Path(out)
    if not path.is_dir():
        return  # new (made by the run), or a file (refused by the run)
    sweep = [f for f in SWEEP_FILES if (path / f).exists()]
    if sweep:
        raise ValueError(f"out: {str(out)!r} holds a jaxrecon sweep ({', '.join(sweep)}); give another --out")
    earlier = [f for f in RUN_FILES if (path / f).exists()]
    if earlier and not overwrite:
        raise ValueError(f"out: {str(out)!r} holds an earlier run ({', '.join(earlier)}); give another --out, "
                         f"or --overwrite to replace its files")


def _add_sweep(sub):
    from .config import leaves
    from .distributed import add_process_arguments
    from .sweeps import SweepConfig

    p = sub.add_parser(
        "sweep", help="run a (p, d, n) x seeds grid, resumable; writes results.csv, thresholds and figures",
        usage="%(prog)s [CONFIG] [options]", formatter_class=HelpFormatter,
        description="Run a sweep from a config file (experiments/*.py) and/or flags; flags override the "
                    "config. Seeds of a grid point run vmapped in one compiled program. Re-running the "
                    "same command resumes; a different config into the same --out is refused. Every "
                    "setting has a flag --section.field (e.g. --attack.steps) and its short spelling "
                    "(--steps); grid flags take comma-separated values (--d 50,100).")
    p.add_argument("config", nargs="?", default=None, help="config file with get_config() (optional)")
    _add_config_arguments(p, SweepConfig)
    p.config_dests = {l.dotted for l in leaves(SweepConfig)}
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the threshold spread")
    p.add_argument("--out", default=None, help="results directory (default: runs/NAME)")
    p.add_argument("--no-plot", action="store_true", help="do not write figures")
    p.add_argument("--quiet", action="store_true", help="no progress bar (one line per grid point)")
    add_process_arguments(p)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args):
    from .config import given_args, x64
    from .distributed import flags_from_args, initialize
    from .sweeps import SweepConfig, load_config, sweep

    initialize(flags_from_args(args), log=print)  # K processes split the grid (jaxrecon.sweeps.split)
    given = given_args(SweepConfig, args)
    cfg = (load_config(args.config) if args.config else SweepConfig()).override(given)
    if not args.config and not any(f"grid.{k}" in given for k in ("p", "p_over_n", "p_over_dn")):
        raise ValueError("p: give a config file or one of --p, --p-over-n, --p-over-dn")
    out = args.out or f"runs/{cfg.name}"
    args.out_dir = out
    with x64() if cfg.resolved().x64 else contextlib.nullcontext():
        sweep(cfg, out=out, progress=not args.quiet, plots=not args.no_plot, bootstrap=args.bootstrap)
    return 0


def _add_plot(sub):
    p = sub.add_parser("plot", help="figures and thresholds from a sweep's results.csv",
                       description="Write law.png/.pdf, residuals.png, collapse.png, thresholds.csv and, "
                                   "with two or more (d, n) curves, finite_size.png for a sweep directory, "
                                   "and print the threshold table.")
    p.add_argument("dir", help="sweep directory holding results.csv")
    p.add_argument("--out", default=None, help="where to write (default: DIR)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the threshold spread")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args):
    from .sweeps import plot_dir

    args.out_dir = args.out or args.dir
    plot_dir(args.dir, out=args.out, bootstrap=args.bootstrap)
    return 0


class UsageError(Exception):
    """A command line argparse cannot parse; ``parser`` is the (sub)parser that refused it."""

    def __init__(self, message: str, parser: argparse.ArgumentParser):
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors :func:`main` turns into one ``jaxrecon: error:`` line:
    with ``defer_errors`` set it raises :class:`UsageError` (else argparse's usage and exit 2)."""

    defer_errors = False

    def error(self, message):
        if self.defer_errors:
            raise UsageError(message, self)
        super().error(message)


# -- the user's names in messages -----------------------------------------------------------------
#
# Errors raised below the CLI start with the name of what is wrong, ``name: ...``: a config
# field (``switch_after``), a CLI option (``out``) or a name internal to the library. main() turns
# that name into the flag as the user typed it (``--switch-after``, ``--attack.switch_after``), in
# this one place: every flag of every command gets it. FLAG_ALIASES maps the library's internal
# names to the config fields they come from (the first of them the user gave is named).

FLAG_ALIASES = {
    "first_steps": ("switch_after",),  # jaxrecon.attack's name of --switch-after
    # jaxrecon.defences.Defence's fields: the reconstruct flags, and the sweep's kind and strengths
    "strength": ("theta_noise", "label_noise", "early_stop_steps", "prune", "defence_strength"),
    "epsilon": ("dp_epsilon", "defence_strength"),
    "delta": ("dp_delta",),
    "dtype": ("quantize", "defence_strength"),
    "kind": ("defence",),
}
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _flag_table(parser: argparse.ArgumentParser) -> dict:
    """``{name: action}`` of a (sub)parser's options: by ``dest`` (``attack.switch_after``) and by
    each spelling without its dashes (``switch_after`` for ``--switch-after``)."""
    table = {}
    for action in parser._actions:  # noqa: SLF001 (argparse keeps no public list)
        if not action.option_strings or action.dest in (None, argparse.SUPPRESS, "help"):
            continue
        table.setdefault(action.dest, action)
        for spelling in action.option_strings:
            table.setdefault(spelling.lstrip("-").replace("-", "_"), action)
    return table


def _typed(parser: argparse.ArgumentParser, argv) -> dict:
    """``{action: spelling}`` of the options on the command line ``argv``, resolved as argparse
    does (an exact spelling, else the one spelling a prefix abbreviates); the last one of an
    option given twice (its value is the one used)."""
    spellings = {s: a for a in parser._actions for s in a.option_strings}  # noqa: SLF001
    typed = {}
    for token in argv or ():
        if not isinstance(token, str) or not token.startswith("-") or token == "--":
            continue
        opt = token.split("=", 1)[0]
        if opt in spellings:
            typed[spellings[opt]] = opt
            continue
        match = [s for s in spellings if s.startswith(opt) and len(opt) > 2]
        if len({spellings[s] for s in match}) == 1:
            typed[spellings[match[0]]] = match[0]
    return typed


def _config_key(action) -> str:
    """How a config file names an option: its flat spelling (``defence_strength``)."""
    plain = [s for s in action.option_strings if "." not in s] or action.option_strings
    return plain[-1].lstrip("-").replace("-", "_")


def _field_names(head: str) -> tuple:
    """The config names ``head`` may stand for: itself, its :data:`FLAG_ALIASES`, and for a dotted
    attack option (``start.split.features``) its flat names (:data:`jaxrecon.attack.options.LEGACY`),
    then its last component."""
    names = [head, *FLAG_ALIASES.get(head, ())]
    if "." in head:
        try:
            from .attack.options import LEGACY
        except ImportError:  # pragma: no cover
            LEGACY = {}
        last = head.rsplit(".", 1)[-1]
        names += [flat for flat, dotted in LEGACY.items() if dotted == head] + [last, *FLAG_ALIASES.get(last, ())]
    return tuple(names)


def user_names(message: str, parser: argparse.ArgumentParser, argv, config_file: bool = False) -> str:
    """``message`` (``name: ...``) with ``name`` the flag the user typed on ``argv``.

    ``name`` is a config field, a CLI option or an internal name of :data:`FLAG_ALIASES` (or a
    dotted name ending in one: ``first_order.switch_after``). When the user typed none of its
    flags, a config field's name becomes its short flag (``--defence-strength``), or with a
    ``config_file`` (where the value may come from) its config key (``defence_strength``). Other
    names stay.
    argparse's own ``argument --a.b/--b: ...`` names the spelling typed."""
    typed = _typed(parser, argv)
    own = re.match(r"argument (\S+): (.*)", message, re.S)
    if own:
        spellings = own.group(1).split("/")
        named = [t for a, t in typed.items() if set(a.option_strings) & set(spellings)]
        return f"{named[0] if named else spellings[-1]}: {own.group(2)}"
    head, sep, rest = message.partition(": ")
    if not sep or not all(_NAME.fullmatch(h) for h in head.split("/")):
        return message
    table = _flag_table(parser)
    if "/" in head:  # "a/b/c: ..." about several options: the ones the user typed
        named = [typed[table[h]] for h in head.split("/") if h in table and table[h] in typed]
        return f"{'/'.join(named)}: {rest}" if named else message
    names = _field_names(head)
    actions = list(dict.fromkeys(table[k] for k in names if k in table))
    for action in actions:
        if action in typed:
            return f"{typed[action]}: {rest}"
    # a field of a part the flag names: cg_iters of the split start's LM is --split-cg-iters
    fields = {n.rsplit(".", 1)[-1] for n in names}
    for action, spelling in typed.items():
        if any(_config_key(action).endswith("_" + f) for f in fields):
            return f"{spelling}: {rest}"
    if not actions or actions[0].dest not in getattr(parser, "config_dests", ()):
        return message  # not a config field (plot's "out" names DIR's files): as it is
    if config_file:
        return f"{_config_key(actions[0])}: {rest}"
    plain = [s for s in actions[0].option_strings if "." not in s] or actions[0].option_strings
    return f"{plain[-1]}: {rest}"


def _check_paths(args) -> None:
    """Path options given as an empty string (``--out ""``) are errors, not the default."""
    for name in ("out", "dir", "config", "data.dir"):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            default = " (or leave the option out for its default)" if name in ("out", "data.dir") else ""
            raise ValueError(f"{name}: empty path {value!r}; give a path{default}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="jaxrecon",
        description="Reconstruct training data from model parameters (Iurada et al., ICLR 2026).",
    )
    parser.add_argument("--version", action="version", version=f"jaxrecon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = sub.choices  # {command: its parser}, for the user's names in messages
    _add_reconstruct(sub)
    _add_sweep(sub)
    _add_plot(sub)
    from .theory import add_parser as add_theory

    add_theory(sub)
    return parser


def main(argv=None) -> int:
    from .signals import Interrupted, handle_signals

    argv = sys.argv[1:] if argv is None else list(argv)
    with handle_signals() as request:  # before the heavy imports: a signal during them is handled too
        parser = build_parser()
        for p in (parser, *parser.commands.values()):
            p.defer_errors = True
        try:
            args = parser.parse_args(argv)
        except UsageError as e:  # the top parser refuses what the command left (unrecognized arguments)
            where = e.parser
            if where is parser:
                where = next((parser.commands[a] for a in argv if a in parser.commands), parser)
            print(f"jaxrecon: error: {user_names(str(e), where, argv)} (see: {where.prog} --help)", file=sys.stderr)
            return 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if request is not None:
            request.what = getattr(args, "stops_after", "grid point" if args.command == "sweep" else "step")
        command = parser.commands.get(args.command, parser)
        from .cache import enable_compilation_cache

        enable_compilation_cache()
        try:
            _check_paths(args)
            code = args.func(args) or 0
        except ValueError as e:
            named = user_names(str(e), command, argv, config_file=bool(getattr(args, "config", None)))
            print(f"jaxrecon: error: {named}", file=sys.stderr)
            return 2
        except OSError as e:  # read-only or full disk, a missing file: the path and the reason
            # a write error of an open file (a full disk) carries no file name: the output directory
            where = e.filename or getattr(args, "out_dir", None)
            where = f"{where}: " if where else ""
            print(f"jaxrecon: error: {where}{e.strerror or e}", file=sys.stderr)
            return 1
        except Interrupted as e:
            print(f"jaxrecon: {e}", file=sys.stderr)
            return request.exit_code if request is not None and request.exit_code else 130
        except KeyboardInterrupt:  # outside the main thread, where signals are not handled
            print("jaxrecon: interrupted", file=sys.stderr)
            return 130
        if request is not None and request.exit_code:  # stopped early by a signal; finished work is saved
            return request.exit_code
        return code


if __name__ == "__main__":
    sys.exit(main())
