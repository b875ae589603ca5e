"""Smoke run of the prepared mixed-precision GPU check on the CPU (bf16, no scaler)."""

import pytest

from benchmarks.perf.gpu_amp_check import main


@pytest.mark.filterwarnings("ignore::UserWarning:pytorch_lightning")
@pytest.mark.filterwarnings("ignore::UserWarning:lightning_fabric")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pytorch_lightning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:lightning_fabric")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated")
def test_cpu_smoke_run_passes_every_check(capsys):
    assert main(["--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith(("PASS", "FAIL"))] == [
        "PASS blend dtype under autocast",
        "PASS torch.bfloat16 autocast + GradScaler",
        "PASS Lightning mixed precision",
        "PASS Accelerate mixed precision",
    ]
