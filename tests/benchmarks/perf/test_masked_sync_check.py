"""The prepared device check of the masked, deferred path runs on the CPU (a smoke test)."""

from benchmarks.perf.masked_sync_check import main


def test_cpu_smoke_run(capsys):
    assert main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "sync check: skipped (not on CUDA)" in out
    assert "masked sync check: PASS" in out
