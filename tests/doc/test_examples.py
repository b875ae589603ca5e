"""Every ```python block in README.md and docs/*.md runs (blocks of a file share a namespace);
an ```output block right after one holds the lines it prints."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
# A python block and the ```output block that follows it (blank lines between), if any.
WITH_OUTPUT = re.compile(
    r"^```python\n(.*?)^```\n(?:\s*^```output\n(.*?)^```)?", re.DOTALL | re.MULTILINE
)
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
    blocks = WITH_OUTPUT.findall(path.read_text())
    namespace: dict = {"__name__": "__doc_example__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for index, (code, expected) in enumerate(blocks):
            capsys.readouterr()
            try:
                exec(compile(code, f"{path.name}[block {index}]", "exec"), namespace)
            except Exception as error:
                raise AssertionError(
                    f"{path.name}, python block {index} failed: {error!r}"
                ) from error
            if expected:
                printed = capsys.readouterr().out.splitlines()
                lines = expected.splitlines()
                assert [line for line in printed if line in lines] == lines, (
                    f"{path.name}, python block {index} printed {printed}, the docs say {lines}"
                )
    finally:
        os.chdir(cwd)
