"""Speed and memory measurements: pytest-benchmark suites and throughput scripts."""
