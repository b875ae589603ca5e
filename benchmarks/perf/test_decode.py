"""pytest-benchmark: decoding one training clip, today's path against the alternatives.

One benchmark per (video size, clip shape, variant of ``benchmarks.perf._decode.VARIANTS``),
grouped by video and clip shape; each round decodes the same ``CLIPS`` random clips of a 10 s
H.264 video (340 × 256 or 640 × 360, 30 fps, a keyframe every 250 frames, B-frames; web-like
bit rate), opening the file per clip as a DataLoader worker does. Wall time is what
pytest-benchmark times; the CPU time of the process (every thread) goes into ``extra_info``,
and ``conftest.py`` prints, per group, each variant's clips per CPU-second (= per core) and
its ratio to ``today``. Run with ``make bench`` or
``python -m pytest benchmarks/perf/test_decode.py --benchmark-only``; for the ratios
measured round-robin (less sensitive to load) and other keyframe intervals:
``python -m benchmarks.perf.decode_compare``.
"""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks.data import open_media, probe_media
from benchmarks.perf._decode import SHAPES, VARIANTS, clip_starts, write_web_video

SIZES = {"340x256": (340, 256), "640x360": (640, 360)}
CLIPS = 4


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("decode")
    return {k: write_web_video(folder / f"{k}.mp4", size) for k, size in SIZES.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("size", list(SIZES))
def test_decode_clip(benchmark, videos, size, shape, variant):
    path, clip = videos[size], SHAPES[shape]
    benchmark.group = f"decode {size} H.264 (GOP 250), clip {shape}: {clip.label}"
    with open_media(path) as c:
        info = probe_media(c)
    starts = clip_starts(info.duration, clip, info.fps, CLIPS)
    decoder = VARIANTS[variant]
    cpu: list[float] = []

    def run() -> None:
        t = time.process_time()
        for start in starts:
            with open_media(path) as container:
                decoder(container, start, clip.num_frames, clip.stride, clip.short_side)
        cpu.append(time.process_time() - t)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    cpu = sorted(cpu[1:])  # the warm-up round is not timed by pytest-benchmark either
    benchmark.extra_info.update(variant=variant, clips=CLIPS, cpu_seconds_median=cpu[len(cpu) // 2])
