"""Shared set-up of the pytest-benchmark suites, and the ratios of step and run times (and of
decode CPU time) printed after a benchmark run."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module's benchmarks (the models are small; ratios are steadier)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    medians = {b.name: b.stats.median for b in session.benchmarks if b.stats}
    naive = medians.get("test_naive_summed_loss_step")
    blend = medians.get("test_gradient_blender_step")
    if naive and blend:
        terminalreporter.write_line(
            f"GradientBlender / naive median step time: {blend / naive:.4f} "
            f"({blend * 1e3:.3f} ms vs {naive * 1e3:.3f} ms)"
        )
    cost = {
        b.name.split("[", 1)[1].rstrip("]"): b
        for b in session.benchmarks
        if b.stats and b.name.startswith("test_estimator_cost[")
    }
    if "plain" in cost:
        base = cost["plain"].stats.median
        terminalreporter.write_line("Per-step cost vs the plain optimizer (median epoch / steps):")
        for mode, b in cost.items():
            steps = b.extra_info.get("steps", 1)
            terminalreporter.write_line(
                f"  {mode:20s} {1e3 * b.stats.median / steps:8.3f} ms/step  "
                f"{b.stats.median / base:6.3f}x"
            )
    runs = [
        b for b in session.benchmarks if b.stats and b.name.startswith("test_rolling_run_cost[")
    ]
    if runs:
        terminalreporter.write_line(
            "Run time / naive's (fastest round: the least load), per dataset:"
        )
    for dataset in dict.fromkeys(b.extra_info["dataset"] for b in runs):
        rows = {
            b.extra_info["method"]: b.stats.min for b in runs if b.extra_info["dataset"] == dataset
        }
        if "naive" in rows:
            terminalreporter.write_line(
                f"  {dataset:14s} "
                + "  ".join(f"{m} {t / rows['naive']:.3f}x ({t:.2f} s)" for m, t in rows.items())
            )
    decode = [b for b in session.benchmarks if b.stats and b.name.startswith("test_decode_clip[")]
    for group in sorted({b.group for b in decode}):
        rows = {b.extra_info["variant"]: b for b in decode if b.group == group}
        if "today" not in rows:
            continue
        base = rows["today"].extra_info["cpu_seconds_median"]
        terminalreporter.write_line(f"{group}: clips per CPU-second (per core), x today")
        for variant, b in rows.items():
            cpu = b.extra_info["cpu_seconds_median"]
            terminalreporter.write_line(
                f"  {variant:20s} {b.extra_info['clips'] / cpu:8.2f}  {base / cpu:6.2f}x  "
                f"(wall median {b.stats.median:.3f} s)"
            )
