"""The prepared GPU check runs end to end on the CPU at tiny size (a smoke test)."""

from benchmarks.perf.gpu_check import main


def test_cpu_smoke_run(capsys):
    code = main(
        [
            "--device",
            "cpu",
            "--size",
            "tiny",
            "--visual",
            "r3d_10",
            "--audio",
            "audio_resnet_18",
            "--batch",
            "2",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--no-bf16",  # torch 2.13's CPU bf16 Conv3d weight gradient is non-finite
            "--engine-steps",
            "1",
            "--holdout-batches",
            "1",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "sync check: skipped (not on CUDA)" in out
    assert "rolling (default, a measurement every 20 steps, amortized)" in out
    for variant in ("naive", "blender", "per-head", "rolling-measure"):
        assert variant in out
    for mode in ("plain", "fixed", "exact-online-loop", "exact-online-vmap"):
        assert f"\n{mode} " in out
