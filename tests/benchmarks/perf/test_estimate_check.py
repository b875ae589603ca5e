"""The prepared device check of the estimate runs end to end on the CPU (a smoke test)."""

from benchmarks.perf.estimate_check import main


def test_cpu_smoke_run(capsys):
    args = ["--device", "cpu", "--steps", "4", "--hidden", "8", "--batch", "8", "--rounds", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "head 'b': its copy diverged" in out
    assert "per-step sync / counters: median ratio" in out
