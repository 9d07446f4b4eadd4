"""The attack as composable parts.

* :mod:`~jaxrecon.attack.methods` -- :class:`Method` (phases, start, stop, stall, loss, population)
  and the named factories ``published``, ``adam``, ``adam_lm``, ``adam_lm_split``, ``auto`` ...;
* :mod:`~jaxrecon.attack.parts` -- the parts :class:`Start` (with :class:`Split`), :class:`Stop`,
  :class:`Stall`, :class:`Loss`; :mod:`~jaxrecon.attack.options` -- every option's dotted name;
* :mod:`~jaxrecon.attack.auto` -- the default ``auto``: the recipe per problem, escalation;
* :mod:`~jaxrecon.attack.first_order` / :mod:`~jaxrecon.attack.lm` -- the phases;
* :mod:`~jaxrecon.attack.stall` -- stall actions (pair repair, row redraw, restart);
* :mod:`~jaxrecon.attack.loop` -- the generic loop and :func:`reconstruct` (pure);
* :mod:`~jaxrecon.attack.driver` -- many seeds in one compiled program (:func:`reconstruct_seeds`);
* :mod:`~jaxrecon.attack.state` -- typed state, :class:`Status` and :class:`Phase` enums;
* :mod:`~jaxrecon.attack.degenerate` -- problems that identify nothing (zero ``theta``, ``p <= n``,
  ``d = 1``): status ``"degenerate"`` and a warning.
"""

from .driver import SeedsResult, reconstruct_seeds
from .first_order import COMMON_OPTIMIZERS, FirstOrder
from .lm import LevenbergMarquardt
from .loop import advance, attack_target, finalize, init_state, make_solver, reconstruct, run_steps
from .methods import DEFAULT_METHOD, METHODS, Method, adam, adam_lm, method_config, published
from .parts import Loss, Split, Stall, Start, Stop
from .stall import PairRepair, Restart, RowRedraw
from .state import STATUS_NAMES, AttackState, Phase, ReconResult, Status

__all__ = ["COMMON_OPTIMIZERS", "DEFAULT_METHOD", "METHODS", "AttackState", "FirstOrder", "LevenbergMarquardt",
           "Loss", "Method", "Split", "Stall", "Start", "Stop", "PairRepair", "Phase", "ReconResult", "Restart", "RowRedraw", "STATUS_NAMES", "SeedsResult",
           "Status", "adam", "adam_lm", "advance", "attack_target", "finalize", "init_state", "make_solver",
           "method_config", "published", "reconstruct", "reconstruct_seeds", "run_steps"]
