"""The paper's Table 6 figures, and docs/models.md kept in step with the code."""

import re
from pathlib import Path

import pytest
import torch

from benchmarks.models import count_gflops, create, list_models, summarize
from benchmarks.models._summary import HEADER

DOC = Path(__file__).resolve().parents[3] / "docs" / "models.md"


@pytest.mark.parametrize(
    ("name", "gflops"),
    [
        ("ip_csn_152", 108.8),  # Table 6, ip-CSN-152, one view of 32×256×256
        ("ir_csn_152", 96.7),  # CSN paper (Tran et al. 2019), ir-CSN-152 at the same size
        ("av_ip_csn_152", 110.1),  # Table 6, G-Blend: + audio ResNet-152 on 1×100×40 + head
    ],
)
def test_table6_gflops_within_one_percent(model_rows, name, gflops):
    measured = model_rows[name][1]
    assert abs(measured - gflops) / gflops < 0.01
    assert model_rows[name][2].startswith("3×32×256×256") or model_rows[name][2].startswith(
        "rgb 3×32×256"
    )


def test_224_crop_does_not_reproduce_table6():
    # The 30-view test uses 256×256 crops; at 224×224 the count is 31% lower.
    with torch.device("meta"):
        model = create("ip_csn_152").eval()
    gflops = count_gflops(model, torch.empty(1, 3, 32, 224, 224, device="meta"))
    assert gflops == pytest.approx(108.8 * (224 / 256) ** 2, rel=0.01)


def test_summarize_counts_parameters():
    s = summarize("ip_csn_152")
    assert s.parameters == pytest.approx(33.0e6, rel=0.01)
    assert s.input_size == "3×32×256×256"


def test_table_lists_every_model(model_rows):
    assert sorted(model_rows) == list_models()


def test_docs_table_matches_code(model_table):
    text = DOC.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- models-table:start -->\n(.*?)\n<!-- models-table:end -->", text, re.DOTALL
    )
    assert match, "docs/models.md lost its models-table markers"
    assert match.group(1).strip() == model_table.strip(), (
        "docs/models.md is out of date: paste the output of `python -m benchmarks.models.summary`"
    )
    assert HEADER.splitlines()[0] in text
