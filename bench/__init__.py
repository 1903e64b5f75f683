"""Benchmark harness of the identity engine.

``bench.workloads`` makes seeded workloads; ``bench.subjects`` holds what is measured and its
references; ``bench.measure`` times (CPU and wall, medians, round-robin) and sizes memory;
``bench.report`` and ``bench.scale`` are ``python -m bench report`` and ``scale``;
``bench/test_*.py`` is the pytest-benchmark suite (``pytest bench/ --benchmark-only``).
"""
