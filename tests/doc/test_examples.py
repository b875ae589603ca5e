"""Every ```python block in README.md and docs/*.md runs (blocks of a file share a namespace)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FILES = [
    f
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if BLOCK.search(f.read_text())
]


def test_there_are_examples():
    assert sum(len(BLOCK.findall(f.read_text())) for f in FILES) >= 5


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_examples_run(path, tmp_path, capsys):
    blocks = BLOCK.findall(path.read_text())
    namespace: dict = {"__name__": "__doc_example__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for index, code in enumerate(blocks):
            try:
                exec(compile(code, f"{path.name}[block {index}]", "exec"), namespace)
            except Exception as error:
                raise AssertionError(
                    f"{path.name}, python block {index} failed: {error!r}"
                ) from error
    finally:
        os.chdir(cwd)
