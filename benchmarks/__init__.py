"""Benchmarks of executorlib against the wire floor and ``concurrent.futures.ProcessPoolExecutor``.

Run ``python -m benchmarks [--quick] [--json PATH]`` from the repository root. Targets are reported, never
enforced: the command exits 0 whether or not they are met.
"""
