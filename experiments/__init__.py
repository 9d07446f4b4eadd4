"""One sweep config per paper figure; each docstring holds the command that runs it.

A config is a Python file with ``get_config()`` returning plain data (the fields of
:class:`jaxrecon.sweeps.SweepConfig`); any value can be overridden on the command line.
"""
