"""The main job's error contract: one line with the fix, exit 2, no traceback (``--debug``:
the traceback), and checked before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import main

CHEAP = ["--datasets", "synthetic_av", "--methods", "naive", "--seeds", "1", "--epochs", "1",
         "--jobs", "1", "--no-progress", "--no-plots"]  # fmt: skip


def _bad_out(tmp_path: Path) -> list[str]:
    (tmp_path / "a_file").write_text("not a folder\n")
    return ["--out", str(tmp_path / "a_file")]


def _bad_docs(tmp_path: Path) -> list[str]:
    return ["--out", str(tmp_path / "run"), "--docs", str(tmp_path / "no" / "such" / "page.md")]


@pytest.mark.parametrize(
    ("paths", "names"),
    [(_bad_out, ("--out", "a_file", "is a file")), (_bad_docs, ("--docs", "does not exist"))],
)
def test_unwritable_paths_are_one_line_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], paths, names
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*CHEAP, *paths(tmp_path)])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("python -m benchmarks: error: ")
    for name in names:
        assert name in err
    assert not (tmp_path / "run").exists()  # refused before running anything
    assert captured.out == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="is a file"):
        main([*CHEAP, *_bad_out(tmp_path), "--debug"])
