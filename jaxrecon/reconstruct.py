"""Former home of the attack, kept as an import path: the attack lives in :mod:`jaxrecon.attack`."""

from .attack import *  # noqa: F401,F403
from .attack import __all__  # noqa: F401
from .attack.methods import Method as MethodConfig  # noqa: F401  (older name)
