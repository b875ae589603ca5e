"""The blendopt benchmark suite: reference backbones, datasets, runners and reports.

Run from a clone of the repository: ``python -m benchmarks``.
"""
