"""Cases of the reliability suite (``benchmarks/reliability.py``): one module per area, each with
a list ``CASES`` of :class:`~benchmarks.reliability_cases._case.Case`."""
