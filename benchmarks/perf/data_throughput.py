"""Decode + transform throughput of the clip datasets (issue 4, "Performance").

Measures clips/s for one process (the per-worker rate) and for DataLoader workers 1..K, for
16×112×112 and 32×224×224 clips with audio (RGB + 100×40 log-mel), on generated
Kinetics-like media (10 s, 340×256, 30 fps, AAC 44.1 kHz; by default H.264 at a web bit
rate, ``--media pattern`` for ``write_test_video``'s 4 Mbit/s test pattern) or on your own
files, and times each stage (open, video decode with RGB conversion + resize, crop/flip,
normalize, audio decode + resample, log-mel) to name the bottleneck. The decoder variants
themselves are compared by ``python -m benchmarks.perf.decode_compare``.

``--normalize worker device`` (the default: both, side by side) measures the two places RGB
is normalized: in the loader worker (float32 clips) or on the device after the copy (uint8
clips, ``ClipDataset(normalize="device")``): clips per CPU-second of a worker, bytes per
batch, and what the normalization costs where it then runs (on a CPU-only run, the main
process: :class:`~benchmarks.data.FrameNormalizer` on a CPU batch).

    python -m benchmarks.perf.data_throughput --help
    python -m benchmarks.perf.data_throughput --videos 8 --clips 24 --workers 1 2
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from benchmarks.data import (
    ClipDataset,
    ClipRecord,
    ClipSpec,
    FrameNormalizer,
    collate_clips,
    decode_audio_clip,
    decode_video_clip,
    normalize,
    open_media,
    probe_media,
    random_crop,
    write_test_video,
)
from benchmarks.perf._decode import describe, write_web_video

CONFIGS = {"16x112": ClipSpec.ablation, "32x224": ClipSpec.csn}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.perf.data_throughput",
        description="Clip decode+transform throughput (clips/s) per worker and 1..K workers.",
    )
    p.add_argument("--root", help="folder of .mp4 files to read (default: generate media)")
    p.add_argument("--videos", type=int, default=8, help="videos to generate (default 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="generated length (default 10)")
    p.add_argument("--size", default="340x256", help="generated WxH (default 340x256)")
    p.add_argument("--fps", type=int, default=30, help="generated frame rate (default 30)")
    p.add_argument(
        "--media",
        choices=["web", "pattern"],
        default="web",
        help="web: H.264 CRF 23 (default); pattern: write_test_video's test pattern",
    )
    p.add_argument("--codec", default="libx264", help="pattern media's codec (default libx264)")
    p.add_argument(
        "--gop",
        type=int,
        default=None,
        help="generated keyframe interval (default: 250, libx264's default)",
    )
    p.add_argument("--clips", type=int, default=48, help="clips timed per measurement")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="DataLoader workers")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument(
        "--normalize",
        nargs="+",
        default=["worker", "device"],
        choices=["worker", "device"],
        help="where RGB is normalized: in the worker (float32 clips) or on the device (uint8 "
        "clips); default both, side by side",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the per-stage timing")
    return p.parse_args(argv)


def make_media(folder: str, args: argparse.Namespace) -> list[str]:
    width, height = (int(x) for x in args.size.lower().split("x"))
    if args.media == "web":
        return [
            write_web_video(
                os.path.join(folder, f"v{i:03d}.mp4"),
                (width, height),
                args.seconds,
                args.fps,
                args.gop or 250,
                seed=i,
                sample_rate=44100,
            )
            for i in range(args.videos)
        ]
    return [
        write_test_video(
            os.path.join(folder, f"v{i:03d}.mp4"),
            seconds=args.seconds,
            fps=args.fps,
            size=(width, height),
            sample_rate=44100,
            video_codec=args.codec,
            seed=i,
            gop=args.gop,
        )
        for i in range(args.videos)
    ]


def dataset(paths: list[str], spec: ClipSpec, n: int, normalize: str = "worker") -> ClipDataset:
    records = [ClipRecord(paths[i % len(paths)], 0, str(i)) for i in range(n)]
    return ClipDataset(records, mode="train", spec=spec, normalize=normalize)  # type: ignore[arg-type]


def batch_bytes(ds: ClipDataset, batch_size: int) -> dict[str, int]:
    """Bytes of each input of a batch of ``batch_size`` clips (what is collated, pinned and
    copied to the device)."""
    sample = ds[0]
    if not isinstance(sample, tuple):
        raise RuntimeError(f"benchmark sample skipped: {sample}")
    return {m: x.nbytes * batch_size for m, x in sample[0].items()}


def normalize_cost(spec: ClipSpec, batch_size: int, rounds: int = 3) -> tuple[float, float]:
    """Milliseconds per clip of normalizing RGB on this CPU, one thread: in a worker (one
    clip, :func:`normalize`) and as a batch (:class:`FrameNormalizer`, what a CPU-only run's
    main process does with ``normalize="device"``)."""
    gen = torch.Generator().manual_seed(0)
    size = (batch_size, spec.num_frames, spec.crop_size, spec.crop_size, 3)
    frames = torch.randint(0, 256, size, dtype=torch.uint8, generator=gen)
    device = FrameNormalizer(spec.mean, spec.std)
    device(frames)  # warm up
    t = time.process_time()
    for _ in range(rounds):
        for clip in frames:
            normalize(clip, spec.mean, spec.std)
    worker = (time.process_time() - t) / (rounds * batch_size)
    t = time.process_time()
    for _ in range(rounds):
        device(frames)
    batch = (time.process_time() - t) / (rounds * batch_size)
    return 1000 * worker, 1000 * batch


def rate_in_process(ds: ClipDataset) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second) in this process.

    The CPU-second rate does not depend on other load on the machine: it is what one worker
    process delivers when it has a core to itself.
    """
    return rates_in_process({"": ds})[""]


def rates_in_process(datasets: dict[str, ClipDataset]) -> dict[str, tuple[float, float]]:
    """:func:`rate_in_process` of several datasets measured round-robin, item by item (the
    same item of each in turn, under the same seed, so the same clip), so that a change of
    load on the machine weighs on each alike: ratios are comparable within one call."""
    wall = dict.fromkeys(datasets, 0.0)
    cpu = dict.fromkeys(datasets, 0.0)
    n = min(len(ds) for ds in datasets.values())
    for ds in datasets.values():
        torch.manual_seed(0)
        ds[0]  # warm up
    for i in range(n):
        for key, ds in datasets.items():
            torch.manual_seed(i)
            t, c = time.perf_counter(), time.process_time()
            sample = ds[i]
            wall[key] += time.perf_counter() - t
            cpu[key] += time.process_time() - c
            if not isinstance(sample, tuple):
                raise RuntimeError(f"benchmark sample skipped: {sample}")
    return {k: (n / wall[k], n / cpu[k]) for k in datasets}


def rate_loader(ds: ClipDataset, workers: int, batch_size: int) -> float:
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_clips,
        persistent_workers=False,
        prefetch_factor=2,
    )
    t = time.perf_counter()  # worker start-up included: use enough clips to amortize it
    n = 0
    for batch in loader:
        n += batch.size
    return n / (time.perf_counter() - t)


def profile(paths: list[str], spec: ClipSpec, n: int) -> tuple[dict[str, float], float, int]:
    """Mean milliseconds per clip of each stage, frames between the keyframe a seek lands
    on and the clip start (read from the packets; the decoder skips the non-reference
    ones), and frames in the clip's span.

    The stages are those of a training item of :class:`ClipDataset`, timed one by one.
    """
    stages: dict[str, list[float]] = {
        k: []
        for k in (
            "open+probe",
            "video decode+rgb resize",
            "crop/flip",
            "normalize (worker only)",
            "audio decode+resample",
            "log-mel",
        )
    }
    gen = torch.Generator().manual_seed(0)
    lead_in = 0
    span = (spec.num_frames - 1) * spec.frame_stride + 1
    for i in range(n):
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        with open_media(path) as c:
            info = probe_media(c)
            t1 = time.perf_counter()
            start = float(torch.rand((), generator=gen)) * max(0.0, info.duration - span / info.fps)
            short_side = spec.train_short_side[0]
            t2 = time.perf_counter()
            frames = decode_video_clip(c, start, spec.num_frames, spec.frame_stride, short_side)
            t3 = time.perf_counter()
            x = random_crop(frames, spec.crop_size, gen).flip(2)
            t35 = time.perf_counter()
            x = normalize(x, spec.mean, spec.std)
            t4 = time.perf_counter()
            wave = decode_audio_clip(c, start, spec.log_mel.num_samples)
            t5 = time.perf_counter()
            spec.log_mel(wave)
            t6 = time.perf_counter()
            lead_in += _frames_before(c, start, info.fps)
        del x
        stages["open+probe"].append(t1 - t0)
        stages["video decode+rgb resize"].append(t3 - t2)
        stages["crop/flip"].append(t35 - t3)
        stages["normalize (worker only)"].append(t4 - t35)
        stages["audio decode+resample"].append(t5 - t4)
        stages["log-mel"].append(t6 - t5)
    ms = {k: 1000 * statistics.mean(v) for k, v in stages.items()}
    return ms, lead_in / n, span


def _frames_before(container: Any, start: float, fps: float) -> int:
    """Frames between the keyframe at or before ``start`` and ``start`` (from the packets)."""
    stream = container.streams.video[0]
    origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    container.seek(int((origin + start) / stream.time_base), stream=stream, backward=True)
    before = 0
    for packet in container.demux(stream):
        if packet.pts is None or (packet.is_keyframe and before):
            break
        t = float(packet.pts * stream.time_base) - origin
        if t >= start + 2:  # well past the start, after any reordered B-frames
            break
        before += t < start - 0.5 / fps
    return before


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # one thread per process, as inside DataLoader workers
    with tempfile.TemporaryDirectory() as tmp:
        if args.root:
            paths = sorted(glob.glob(os.path.join(args.root, "**", "*.mp4"), recursive=True))
            if not paths:
                raise SystemExit(f"--root {args.root!r} holds no .mp4 file")
            source = f"{len(paths)} files under {args.root}"
        else:
            t = time.perf_counter()
            paths = make_media(tmp, args)
            codec = "H.264 CRF 23" if args.media == "web" else args.codec
            source = (
                f"{len(paths)} generated videos, {args.seconds:g} s {args.size} @ {args.fps} fps "
                f"{codec} (GOP {args.gop or 'default'}) + AAC 44.1 kHz "
                f"(written in {time.perf_counter() - t:.1f} s; {describe(paths[0])})"
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"media: {source}; torch threads per process: 1; cpus: {os.cpu_count()}; "
            f"load average (1 min) at start: {load:.2f}"
        )
        for name in args.configs:
            spec = CONFIGS[name]()
            print(
                f"\n{name} (T={spec.num_frames}, stride {spec.frame_stride}, crop "
                f"{spec.crop_size}, + audio 1×100×40)"
            )
            sets = {w: dataset(paths, spec, args.clips, w) for w in dict.fromkeys(args.normalize)}
            rates = rates_in_process(sets)  # side by side, clip by clip
            per_core = {w: r[1] for w, r in rates.items()}
            sizes: dict[str, int] = {}
            side = ", clip by clip with the other setting's" if len(sets) > 1 else ""
            for where, ds in sets.items():
                one, one_cpu = rates[where]
                nbytes = batch_bytes(ds, args.batch_size)
                sizes[where] = sum(nbytes.values())
                print(
                    f"  normalize={where}: in-process (1 worker's rate{side}): {one:7.2f} clips/s "
                    f"wall, {one_cpu:7.2f} clips per CPU-second; batch of {args.batch_size}: "
                    f"{sizes[where] / 2**20:.2f} MiB (rgb {nbytes.get('rgb', 0) / 2**20:.2f})"
                )
                base = None
                for w in args.workers:
                    r = rate_loader(ds, w, args.batch_size)
                    base = base or r
                    print(
                        f"    DataLoader num_workers={w}:     {r:7.2f} clips/s total, "
                        f"{r / w:6.2f} per worker, x{r / base:.2f} vs {args.workers[0]}"
                    )
            if len(per_core) == 2:
                worker_ms, batch_ms = normalize_cost(spec, args.batch_size)
                speed = per_core["device"] / per_core["worker"]
                print(
                    f"  device / worker normalization: x{speed:.2f} clips per CPU-second of a "
                    f"worker, x{sizes['device'] / sizes['worker']:.2f} bytes per batch"
                )
                print(
                    f"  normalizing on this CPU (one thread): {worker_ms:.2f} ms per clip in a "
                    f"worker, {batch_ms:.2f} ms per clip as a batch of {args.batch_size} (the "
                    "main process of a CPU-only run with normalize=device)"
                )
            if not args.no_profile:
                ms, lead, span = profile(paths, spec, max(4, args.clips // 4))
                total = sum(ms.values())
                print("  stage profile (ms per clip, one process):")
                for k, v in sorted(ms.items(), key=lambda kv: -kv[1]):
                    print(f"    {k:24s} {v:8.2f}  {100 * v / total:5.1f}%")
                print(
                    f"    bottleneck: {max(ms, key=ms.get)}; frames per clip: {span} in the "
                    f"clip span + {lead:.0f} between keyframe and clip start (of these, the "
                    "non-reference frames the clip does not keep are not decoded)"
                )


if __name__ == "__main__":
    main()
