"""Print the GradientBlender / naive ratio of median step times after a benchmark run."""


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
