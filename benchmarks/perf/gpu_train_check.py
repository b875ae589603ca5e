"""End-to-end training throughput on one GPU: ``python -m benchmarks.perf.gpu_train_check``.

Generates Kinetics-layout media (mp4, 340 × 256, 30 fps, AAC audio; by default 10 s of
H.264 at a web video's bit rate, about 0.4 Mbit/s, with x264's default keyframe interval of
250 frames, as Kinetics' trimmed clips; ``--media pattern`` writes 3 s of
``write_test_video``'s test pattern instead, about 1.6 Mbit/s and 1.4-1.5× the decoding
cost per clip, the media of the first measurements; for a config with the ``flow``
modality also one ``(N, 2, H, W)`` float16 flow file per video at the video's resolution,
Table 4), trains a config with
``python -m benchmarks train``'s loop (DataLoader workers from the CPU count, bf16 autocast,
channels-last) at each ``--batch-sizes`` (default 8 and 32) and compares its clips/s with
bare forward/backward steps of the same model on the same batch shape (inputs already on
the GPU, no data loading). Prints the ratio and the share of the training time spent
waiting for data. Goal: the pipeline reaches >= 90% of bare throughput at batch 32 (data
loading never the bottleneck).

It also prints the CPU decoder's clips per core on this host (today's every-frame path and
the default that skips unkept frames, ``benchmarks.perf._decode``) and, where NVIDIA DALI is
installed (``pip install nvidia-dali-cuda120``, or ``nvidia-dali-cuda130`` for CUDA 13; not
a dependency of the project), DALI's GPU video reader: decode-only clips/s and clips/s of
DALI-fed forward/backward steps (RGB from DALI, audio inputs synthetic), against bare.
torchcodec is not measured: its 0.17 PyPI wheel needs the CUDA 13 runtime and does not load
beside the CPU build of torch 2.13.

RGB clips are normalized where ``data.normalize`` says, by default ``auto``: on the device
(the loader ships uint8 clips, a quarter of the bytes; ``FrameNormalizer`` after the copy)
on CUDA. ``--normalize device worker`` measures both side by side at each batch size (the
first is the main table's; the others add rows and the ratio of their clips/s). The script
also checks on the device that a device-normalized batch equals the worker-normalized one.

The throughput run uses ``method.name=naive`` so that the number is the training loop's, not
G-Blend's estimate (the estimate trains copies of the model: its cost is reported by the
training runs themselves, ``estimate_seconds``). ``--tiny`` runs the same code on a CPU in
seconds (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import blendopt
from benchmarks.data import (
    KINETICS_MEAN,
    KINETICS_STD,
    FrameNormalizer,
    normalize,
    save_flow,
    write_test_video,
)
from benchmarks.perf._decode import SHAPES, compare, describe, write_web_video
from benchmarks.train import build_model, load_config, run_training
from benchmarks.train._loop import _channels_last, _Runner, normalize_where

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kinetics_rgb_audio.toml"


def _write(args: tuple[str, float, tuple[int, int], int, int, str]) -> str:
    path, seconds, size, fps, seed, media = args
    if media == "web":  # H.264 CRF 23, x264's default keyframe interval, AAC at 44.1 kHz
        return write_web_video(path, size, seconds, fps, 250, seed=seed, sample_rate=44100)
    return write_test_video(path, seconds=seconds, fps=fps, size=size, seed=seed)


def _link_or_copy(src: str, dst: Path) -> None:
    try:  # the flow copies share the disk blocks of their source (a few GB otherwise)
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def make_kinetics(
    root: Path,
    videos: int,
    unique: int,
    seconds: float,
    size: tuple[int, int],
    fps: int,
    flow: bool = False,
    media: str = "pattern",
) -> list[str]:
    """``videos`` train + ``videos // 8`` val entries in the Kinetics layout (copies of
    ``unique`` encoded sources, so generation stays quick); with ``flow``, one random
    ``(frames - 1, 2, height, width)`` float16 flow file per video, hard-linked copies of
    ``unique`` sources. ``media``: ``"web"`` (web-like H.264) or ``"pattern"``
    (``write_test_video``). Returns the encoded sources."""
    src = root / "sources"
    jobs = [(str(src / f"s{i}.mp4"), seconds, size, fps, i, media) for i in range(unique)]
    with ProcessPoolExecutor(max_workers=min(unique, os.cpu_count() or 1)) as pool:
        sources = list(pool.map(_write, jobs))
    flows = []
    if flow:
        width, height = size
        frames = max(2, round(seconds * fps))
        for i in range(unique):
            field = np.random.default_rng(i).standard_normal((frames - 1, 2, height, width))
            flows.append(save_flow(src / f"s{i}.npy", field.astype(np.float32)))
    labels = [f"class{c}" for c in range(8)]
    for split, n, csv in (("train", videos, "train"), ("val", max(8, videos // 8), "validate")):
        lines = ["label,youtube_id,time_start,time_end"]
        for i in range(n):
            label, ytid = labels[i % len(labels)], f"{split}{i:07d}"
            name = f"{ytid}_000000_{int(seconds):06d}"
            dst = root / split / label / f"{name}.mp4"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[i % unique], dst)
            if flow:
                (root / "flow" / split / label).mkdir(parents=True, exist_ok=True)
                _link_or_copy(flows[i % unique], root / "flow" / split / label / f"{name}.npy")
            lines.append(f"{label},{ytid},0,{int(seconds)}")
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{csv}.csv").write_text("\n".join(lines) + "\n")
    return sources


def training_step(
    cfg: Any, num_classes: int, device: torch.device
) -> tuple[Callable[[Any], None], Callable[[int], dict[str, torch.Tensor]]]:
    """A forward + blended backward + step of ``cfg``'s model, and a maker of random inputs
    of a given batch size already on ``device``."""
    torch.manual_seed(0)
    model = build_model(cfg, num_classes).to(device)
    runner = _Runner(cfg, device, multi_label=False)
    if runner.channels_last:
        _channels_last(model)
    heads = model.head_names
    blender = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
        heads,
        {h: float(h == "fused") for h in heads},
    )
    d = cfg.data
    model.train()

    def inputs(b: int) -> dict[str, torch.Tensor]:
        shapes = {
            "rgb": (b, 3, d.num_frames, d.crop_size, d.crop_size),
            "flow": (b, 2, d.num_frames, d.crop_size, d.crop_size),
            "audio": (b, 1, 100, 40),
        }
        return {m: torch.randn(shapes[m], device=device) for m in d.modalities}

    def step(batch: Any) -> None:
        blender.zero_grad(set_to_none=True)
        blender.backward(runner.loss_fn(model, batch))
        blender.step()

    return step, inputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_clips_per_second(cfg, num_classes: int, device: torch.device, steps: int) -> float:
    """Clips/s of forward + blended backward + step on inputs already on the device."""
    step, inputs = training_step(cfg, num_classes, device)
    b = cfg.train.batch_size
    batch = (inputs(b), torch.randint(0, num_classes, (b,), device=device))
    for _ in range(5):
        step(batch)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(batch)
    _sync(device)
    return steps * b / (time.perf_counter() - t0)


def batch_mib(cfg: Any, where: str) -> float:
    """MiB of a training batch's inputs as the loader ships them (uint8 RGB when normalized
    on the device, float32 otherwise; flow and log-mel float32)."""
    d, b = cfg.data, cfg.train.batch_size
    clip = d.num_frames * d.crop_size * d.crop_size
    sizes = {"rgb": 3 * clip * (1 if where == "device" else 4), "flow": 2 * clip * 4}
    sizes["audio"] = 100 * 40 * 4
    return b * sum(sizes[m] for m in d.modalities) / 2**20


def normalization_difference(cfg: Any, device: torch.device) -> float:
    """Max absolute difference between a batch normalized on ``device`` and the same clips
    normalized as a loader worker does (0: bit-identical)."""
    d = cfg.data
    gen = torch.Generator().manual_seed(0)
    size = (cfg.train.batch_size, d.num_frames, d.crop_size, d.crop_size, 3)
    frames = torch.randint(0, 256, size, dtype=torch.uint8, generator=gen)
    frames.view(-1, 3)[:2] = torch.tensor([[0, 128, 255], [255, 1, 254]], dtype=torch.uint8)
    worker = torch.stack([normalize(clip, KINETICS_MEAN, KINETICS_STD) for clip in frames])
    norm = FrameNormalizer(KINETICS_MEAN, KINETICS_STD)
    runner = _Runner(cfg, device, multi_label=False, frames=norm)
    moved = runner.to_device({"rgb": frames})["rgb"]
    return float((moved.cpu() - worker).abs().max())


def cpu_decode_per_core(path: str, short_side: int, clips: int) -> dict[str, float]:
    """Clips per CPU-second of the every-frame decoder (``today``) and the default
    (``skip``) on ``path``, for the config's clip (16 frames, stride 2 in the paper)."""
    shape = SHAPES["paper"] if short_side >= 256 else SHAPES["ablation"]
    return compare(path, shape, ["today", "skip"], clips=clips, rounds=2).per_core


def dali_clips_per_second(
    cfg: Any, videos: list[str], num_classes: int, device: torch.device, steps: int
) -> tuple[float, float] | str:
    """(DALI decode-only clips/s, clips/s of DALI-fed training steps), or why not measured.

    DALI's GPU reader (NVDEC) reads ``num_frames`` frames at ``frame_stride`` from the
    videos, resizes the short side to the config's smallest training short side, then crops
    at random, flips at random and normalizes on the GPU (``C × T × H × W`` float). The
    training steps take RGB from DALI and the other modalities as random tensors.
    """
    try:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.plugin.pytorch import DALIGenericIterator
    except ImportError:
        return (
            "skipped: NVIDIA DALI is not installed (pip install nvidia-dali-cuda120, or "
            "nvidia-dali-cuda130 for CUDA 13, then rerun)"
        )
    if device.type != "cuda":
        return f"skipped: DALI's GPU video reader needs a CUDA device, not {device}"
    d, b = cfg.data, cfg.train.batch_size

    @pipeline_def(batch_size=b, num_threads=4, device_id=device.index or 0, seed=0)
    def pipeline():  # pragma: no cover - needs DALI and a GPU
        video = fn.readers.video_resize(
            device="gpu",
            filenames=videos,
            sequence_length=d.num_frames,
            stride=d.frame_stride,
            resize_shorter=float(d.train_short_side[0]),
            random_shuffle=True,
            initial_fill=min(len(videos), 256),
            name="reader",
        )
        return fn.crop_mirror_normalize(
            video,
            crop=(d.crop_size, d.crop_size),
            crop_pos_x=fn.random.uniform(range=(0.0, 1.0)),
            crop_pos_y=fn.random.uniform(range=(0.0, 1.0)),
            mirror=fn.random.coin_flip(),
            mean=[255 * m for m in KINETICS_MEAN],  # the training clips' (ClipSpec's)
            std=[255 * s for s in KINETICS_STD],
            dtype=types.FLOAT,
            output_layout="CFHW",
        )

    pipe = pipeline()
    pipe.build()
    loader = DALIGenericIterator([pipe], ["rgb"], reader_name="reader", auto_reset=True)

    def clips():  # pragma: no cover - needs DALI and a GPU
        while True:
            for out in loader:
                yield out[0]["rgb"]

    source = clips()
    for _ in range(3):
        next(source)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(source)
    _sync(device)
    decode = steps * b / (time.perf_counter() - t0)
    step, inputs = training_step(cfg, num_classes, device)
    others, target = inputs(b), torch.randint(0, num_classes, (b,), device=device)

    def fed() -> None:
        step(({**others, "rgb": next(source)}, target))

    for _ in range(3):
        fed()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fed()
    _sync(device)
    return decode, steps * b / (time.perf_counter() - t0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--videos", type=int, default=640, help="training videos (copies)")
    p.add_argument("--unique", type=int, default=32, help="distinct encoded sources")
    p.add_argument("--epochs", type=int, default=2, help="the last epoch is measured")
    p.add_argument("--workers", type=int, default=-1, help="-1: from the CPU count")
    p.add_argument("--bare-steps", type=int, default=30)
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes to measure (default 8 32; with --tiny the config's)",
    )
    p.add_argument(
        "--media",
        choices=["web", "pattern"],
        default="web",
        help="web: H.264 at a web bit rate (default); pattern: write_test_video's pattern",
    )
    p.add_argument(
        "--seconds", type=float, default=None, help="video length (default: web 10, pattern 3)"
    )
    p.add_argument("--decode-clips", type=int, default=8, help="clips per CPU decode timing")
    p.add_argument("--no-dali", action="store_true", help="skip the DALI GPU decoding runs")
    p.add_argument(
        "--normalize",
        nargs="+",
        default=["auto"],
        choices=["auto", "worker", "device"],
        help="where RGB is normalized (data.normalize; auto: device on CUDA); several: "
        "measured side by side, the first in the main table",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--tiny", action="store_true", help="CPU smoke scale")
    p.add_argument("--keep", default=None, help="keep the media and run folder here")
    args = p.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        p.error(f"--seconds should be > 0, found {args.seconds}")
    for name in ("videos", "unique", "epochs", "bare_steps", "decode_clips"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} should be >= 1, found {getattr(args, name)}")
    if args.batch_sizes is not None and min(args.batch_sizes) < 1:
        p.error(f"--batch-sizes should all be >= 1, found {args.batch_sizes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="gpu_train_check_"))
    if args.tiny:
        size, seconds, fps = (64, 48), 1.0, 10
    else:
        size, seconds, fps = (340, 256), 10.0 if args.media == "web" else 3.0, 30
    seconds = args.seconds or seconds
    overrides = [
        "method.name=naive",
        f"train.epochs={args.epochs}",
        "train.holdout_every=0",
        "train.checkpoint_every_steps=0",
        f"data.workers={args.workers}",
        "data.test_clips=2" if not args.tiny else "data.test_clips=1",
        *args.overrides,
    ]
    cfg = load_config(args.config, overrides, smoke=args.tiny)
    batch_sizes = args.batch_sizes or ([cfg.train.batch_size] if args.tiny else [8, 32])
    flow = "flow" in cfg.data.modalities
    device = torch.device(args.device)
    t0 = time.perf_counter()
    sources = make_kinetics(
        work / "kinetics", args.videos, args.unique, seconds, size, fps, flow, args.media
    )
    print(
        f"generated {args.videos} videos{' and flow files' if flow else ''} in "
        f"{time.perf_counter() - t0:.1f} s ({args.media} media: {describe(sources[0])})",
        flush=True,
    )
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    short = cfg.data.train_short_side[0]
    rate = cpu_decode_per_core(sources[0], short, args.decode_clips)
    print(
        f"CPU decode on this host, clips per core (16 frames, stride 2, short side "
        f"{256 if short >= 256 else 128}): every frame {rate['today']:.1f}, skipping "
        f"unkept frames (default) {rate['skip']:.1f}, x{rate['skip'] / rate['today']:.2f}"
    )
    wheres = list(dict.fromkeys(normalize_where(
        load_config(args.config, [*overrides, f"data.normalize={w}"], smoke=args.tiny), device
    ) for w in args.normalize))  # fmt: skip
    diff = normalization_difference(cfg, device)
    print(
        f"RGB normalized on {device} vs in a loader worker, batch of {cfg.train.batch_size}: "
        f"max |difference| {diff:.3g}{' (bit-identical)' if diff == 0 else ''}"
    )
    ratios: dict[str, dict[int, float]] = {w: {} for w in wheres}
    for b in batch_sizes:
        runs = {}
        for where in wheres:
            cfg = load_config(
                args.config,
                [*overrides, f"train.batch_size={b}", f"data.normalize={where}"],
                smoke=args.tiny,
            )
            out = work / f"run_b{b}_{where}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            report = run_training(cfg, work / "kinetics", out, device=args.device, progress=False)
            wall = time.perf_counter() - t0
            records = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines()]
            runs[where] = (report, records, wall)
        bare = bare_clips_per_second(cfg, 8, device, args.bare_steps)
        for where, (_, records, _) in runs.items():
            ratios[where][b] = records[-1]["clips_per_second"] / bare
        dali = "skipped: --no-dali"
        if not args.no_dali:
            videos = sorted(str(v) for v in (work / "kinetics" / "train").rglob("*.mp4"))
            try:  # optional: a DALI failure must not lose the pipeline's numbers
                dali = dali_clips_per_second(cfg, videos, 8, device, args.bare_steps)
            except Exception as exc:
                dali = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        main_where = wheres[0]
        report, records, wall = runs[main_where]
        last = records[-1]
        print(f"\n### batch {b}\n")
        print(f"device {name}; config {Path(args.config).name}; run {wall:.0f} s")
        print(
            f"clip {cfg.data.num_frames}x{cfg.data.crop_size}x{cfg.data.crop_size}, batch "
            f"{cfg.train.batch_size}, workers {report['config']['data']['workers']} "
            f"(-1 = {os.cpu_count()} CPUs - 1), modalities {cfg.data.modalities}, visual "
            f"{cfg.model.visual}, audio {cfg.model.audio}, flow {cfg.model.flow if flow else '-'}"
        )
        print("| measure | value |\n|---|---|")
        print(f"| RGB normalized | {main_where} ({batch_mib(cfg, main_where):.2f} MiB of inputs "
              "per batch) |")  # fmt: skip
        print(f"| pipeline clips/s (last epoch, {last['step'] // len(records)} steps) | "
              f"{last['clips_per_second']:.1f} |")  # fmt: skip
        print(f"| bare forward/backward clips/s | {bare:.1f} |")
        print(f"| pipeline / bare | {ratios[main_where][b]:.3f} (goal >= 0.90) |")
        print(f"| data-wait share of training time | {100 * last['data_wait_share']:.1f}% |")
        print(f"| evaluation seconds ({report['test']['fused']['videos']} videos) | "
              f"{report['timing']['eval_seconds']:.1f} |")  # fmt: skip
        for where in wheres[1:]:
            other, other_records, _ = runs[where]
            o = other_records[-1]
            print(f"| normalize={where}: pipeline clips/s ({batch_mib(cfg, where):.2f} MiB "
                  f"per batch) | {o['clips_per_second']:.1f} |")  # fmt: skip
            print(f"| normalize={where}: pipeline / bare | {ratios[where][b]:.3f} |")
            print(f"| normalize={where}: data-wait share | {100 * o['data_wait_share']:.1f}% |")
            print(f"| normalize={where}: evaluation seconds | "
                  f"{other['timing']['eval_seconds']:.1f} |")  # fmt: skip
            print(f"| pipeline clips/s, {main_where} / {where} | "
                  f"x{last['clips_per_second'] / o['clips_per_second']:.2f} |")  # fmt: skip
        if isinstance(dali, str):
            print(f"| DALI GPU decoding | {dali} |")
        else:
            print(f"| DALI GPU decode only, clips/s (RGB) | {dali[0]:.1f} |")
            print(f"| DALI-fed forward/backward clips/s | {dali[1]:.1f} |")
            print(f"| DALI-fed / bare | {dali[1] / bare:.3f} |")
    summary = ", ".join(f"batch {b} {r:.3f}" for b, r in ratios[wheres[0]].items())
    print(f"\npipeline / bare: {summary} (goal >= 0.90 at batch 32)")
    for where in wheres[1:]:
        summary = ", ".join(f"batch {b} {r:.3f}" for b, r in ratios[where].items())
        print(f"pipeline / bare with normalize={where}: {summary}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
