"""Benchmark harness of the identity engine: seeded workloads (`bench.workloads`) and a CLI."""
