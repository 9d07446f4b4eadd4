"""One config per paper figure; each docstring holds the command that runs it.

A config is a Python file with ``get_config()`` returning the command's typed config: a
:class:`jaxrecon.sweeps.SweepConfig` for ``jaxrecon sweep`` (a dict of its fields also loads), a
:class:`jaxrecon.runner.ReconstructConfig` for a reconstruction; any value can be overridden on the
command line (``--attack.steps 500`` or ``--steps 500``).
"""
