"""Optional dependencies, imported on first use with a one-line message when an extra is missing.

flax (and the orbax/tensorstore it pulls in) is needed only by the network models
(``--model two_layer`` / ``resnet``, :mod:`jaxrecon.models.train`); it is the ``networks`` extra.
The modules that need it import ``nnx`` from here::

    from .._optional import nnx  # flax.nnx, or MissingExtra naming the extra to install
"""

from __future__ import annotations

NETWORKS_INSTALL = "pip install 'jaxrecon[networks]'"


class MissingExtra(ImportError, ValueError):
    """An optional dependency is not installed. An ``ImportError`` for Python callers and a
    ``ValueError`` for the command line, which prints it as one ``jaxrecon: error:`` line."""


def __getattr__(name):
    if name == "nnx":
        try:
            from flax import nnx
        except ImportError as e:
            raise MissingExtra(
                f"the network models (--model two_layer, resnet) need flax, which is not installed: "
                f"{NETWORKS_INSTALL}"
            ) from e
        return nnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
