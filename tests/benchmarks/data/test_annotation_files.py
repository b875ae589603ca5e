"""Annotation files are never read silently wrong (issue 15, point 2).

A CSV that does not parse cleanly (a quote never closed, a field over several lines, a row
with another field count than the header) is an :class:`AnnotationError` (a ValueError)
naming file and line; unknown AudioSet label ids are counted, warned about, and an error
above ``max_unknown_labels``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.data import (
    AnnotationError,
    AudioSet,
    ClipSpec,
    EpicKitchens55,
    Kinetics,
    UnknownLabelsWarning,
)
from benchmarks.data._common import read_csv_numbered

from .test_formats import EPIC_ROWS, SEGMENT_HEADER, write_epic

SPEC = ClipSpec(num_frames=4, crop_size=32, train_short_side=(32, 40), test_short_side=32)
HEADER = "label,youtube_id,time_start,time_end,split"
GOOD = [
    '"air drumming",GM-air00001,3,13,train',
    "zumba,_zumba00002,0,10,train",
    "abseiling,-abs0000003,0,10,train",
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("lines", "line", "what"),
    [
        # the case: an unclosed quote swallows the next row into a bogus 4th class
        ([HEADER, '"air drumming,GM-air00001,3,13,train', GOOD[1] + '"x', GOOD[2]], 2, "parse"),
        # the quote closes on a later line: a label spanning two lines
        ([HEADER, '"air drumming,GM-air00001,3,13,train', 'air drumming",x,0,10,train'], 2, "over"),
        # a quote never closed at all
        ([HEADER, GOOD[0], 'zumba,"_zumba00002,0,10,train', GOOD[2]], 3, "parse"),
        # a well-formed CSV field holding a line break is still not a label
        ([HEADER, GOOD[0], '"zum\nba",_zumba00002,0,10,train'], 3, "over"),
        # one field too many (an unquoted comma in a label)
        ([HEADER, GOOD[1], "air drumming, fast,GM-air00001,3,13,train"], 3, "6 fields"),
    ],
    ids=["unclosed-quote", "label-over-two-lines", "quote-never-closed", "newline", "width"],
)
def test_kinetics_csv_that_does_not_parse_names_file_and_line(tmp_path, lines, line, what):
    csv = write(tmp_path / "train.csv", lines)
    with pytest.raises(AnnotationError, match=rf"'.*train.csv' line {line}\b.*{what}") as e:
        Kinetics(tmp_path, csv, spec=SPEC)
    assert isinstance(e.value, ValueError)
    assert (e.value.path, e.value.line) == (str(csv), line)
    assert any(fix in str(e.value) for fix in ("Fix the quoting", "close the quote", "Quote"))


def test_clean_csv_with_quoted_commas_still_reads(tmp_path):
    lines = [HEADER, *GOOD, '"tying knot (not on a tie), or not",knot0000004,1,11,train']
    ds = Kinetics(tmp_path, write(tmp_path / "train.csv", lines), spec=SPEC)
    assert ds.classes == ["abseiling", "air drumming", "tying knot (not on a tie), or not", "zumba"]
    rows = list(read_csv_numbered(write(tmp_path / "c.csv", ["# c", "", "a,b", "1,2"]), "#"))
    assert rows == [(3, ["a", "b"]), (4, ["1", "2"])]


def test_broken_rows_name_file_line_and_fix(tmp_path):
    short = write(tmp_path / "short.csv", [HEADER, "abseiling,-abs0000003"])
    with pytest.raises(AnnotationError, match=r"short.csv' line 2 has 2 fields.*Quote a field"):
        Kinetics(tmp_path, short)
    bad_time = write(tmp_path / "time.csv", [HEADER, "abseiling,-abs0000003,0:59,69,train"])
    with pytest.raises(AnnotationError, match=r"time.csv'\) line 2: .*write seconds"):
        Kinetics(tmp_path, bad_time)


def test_epic_row_with_an_extra_field_names_file_and_line(tmp_path):
    extra = EPIC_ROWS[1].replace("take cup,", "take, cup,")  # an unquoted comma: 15 fields
    csv = write_epic(tmp_path, [EPIC_ROWS[0], extra])
    with pytest.raises(AnnotationError, match=r"labels.csv' line 3 has 15 fields; the header"):
        EpicKitchens55(tmp_path, csv)


def segments(media, tmp_path: Path, rows: list[str], **kwargs) -> AudioSet:
    csv = write(tmp_path / "balanced_train_segments.csv", [*SEGMENT_HEADER, *rows])
    return AudioSet(tmp_path, csv, media.audioset_labels, spec=SPEC, **kwargs)


ROWS = [f'seg{i:08d}, 30.000, 40.000, "/m/09x0r"' for i in range(9)]


def test_audioset_unknown_label_ids_are_counted_and_warned(media, tmp_path):
    rows = [*ROWS, 'unk00000001, 30.000, 40.000, "/m/09x0r,/m/zzzz"']  # 1 of 10 rows
    with pytest.warns(UnknownLabelsWarning, match=r"1 of 10 rows .*line 13.*/m/zzzz \(1\)"):
        ds = segments(media, tmp_path, rows, max_unknown_labels=0.2)
    assert ds.unknown_labels == {"/m/zzzz": 1}
    assert ds.unknown_label_lines == [13]
    assert ds.records[-1].target == (0,)  # keeps its known label
    only = [*ROWS, 'unk00000001, 30.000, 40.000, "/m/zzzz"']
    with pytest.warns(UnknownLabelsWarning):
        assert len(segments(media, tmp_path, only, max_unknown_labels=0.2).records) == 9


def test_audioset_unknown_label_ids_above_the_limit_are_an_error(media, tmp_path):
    rows = [*ROWS, 'unk00000001, 30.000, 40.000, "/m/zzzz,/m/yyyy"']
    with pytest.raises(AnnotationError, match=r"line 13.*/m/yyyy \(1\), /m/zzzz \(1\)") as e:
        segments(media, tmp_path, rows)  # default limit 1%: 1 of 10 is over it
    assert "same AudioSet release" in str(e.value)
    assert e.value.line == 13


def test_audioset_unclosed_quote_names_file_and_line(media, tmp_path):
    rows = [ROWS[0], 'seg99999999, 30.000, 40.000, "/m/09x0r', *ROWS[1:]]
    with pytest.raises(AnnotationError, match=r"segments.csv' line 5 does not parse"):
        segments(media, tmp_path, rows)
