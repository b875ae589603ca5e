"""End-to-end training throughput on one GPU: ``python -m benchmarks.perf.gpu_train_check``.

Generates Kinetics-layout media (mp4, 340 × 256, 30 fps, AAC audio, a few seconds each; for
a config with the ``flow`` modality also one ``(N, 2, H, W)`` float16 flow file per video at
the video's resolution, Table 4), trains a config with ``python -m benchmarks train``'s loop
(DataLoader workers from the CPU count, bf16 autocast, channels-last) and compares its
clips/s with bare forward/backward steps of the same model on the same batch shape (inputs
already on the GPU, no data loading). Prints the ratio and the share of the training time
spent waiting for data. Goal: the pipeline reaches >= 90% of bare throughput (data loading
never the bottleneck).

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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

import blendopt
from benchmarks.data import save_flow, write_test_video
from benchmarks.train import build_model, load_config, run_training
from benchmarks.train._loop import _channels_last, _Runner

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kinetics_rgb_audio.toml"


def _write(args: tuple[str, float, tuple[int, int], int, int]) -> str:
    path, seconds, size, fps, seed = args
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
) -> None:
    """``videos`` train + ``videos // 8`` val entries in the Kinetics layout (copies of
    ``unique`` encoded sources, so generation stays quick); with ``flow``, one random
    ``(frames - 1, 2, height, width)`` float16 flow file per video, hard-linked copies of
    ``unique`` sources."""
    src = root / "sources"
    jobs = [(str(src / f"s{i}.mp4"), seconds, size, fps, i) for i in range(unique)]
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


def bare_clips_per_second(cfg, num_classes: int, device: torch.device, steps: int) -> float:
    """Clips/s of forward + blended backward + step on inputs already on the device."""
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
    b, d = cfg.train.batch_size, cfg.data
    shapes = {
        "rgb": (b, 3, d.num_frames, d.crop_size, d.crop_size),
        "flow": (b, 2, d.num_frames, d.crop_size, d.crop_size),
        "audio": (b, 1, 100, 40),
    }
    inputs = {m: torch.randn(shapes[m], device=device) for m in d.modalities}
    batch = (inputs, torch.randint(0, num_classes, (b,), device=device))
    model.train()

    def step() -> None:
        blender.zero_grad(set_to_none=True)
        blender.backward(runner.loss_fn(model, batch))
        blender.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * b / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--videos", type=int, default=640, help="training videos (copies)")
    p.add_argument("--unique", type=int, default=32, help="distinct encoded sources")
    p.add_argument("--epochs", type=int, default=2, help="the last epoch is measured")
    p.add_argument("--workers", type=int, default=-1, help="-1: from the CPU count")
    p.add_argument("--bare-steps", type=int, default=30)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--tiny", action="store_true", help="CPU smoke scale")
    p.add_argument("--keep", default=None, help="keep the media and run folder here")
    args = p.parse_args(argv)
    work = Path(args.keep or tempfile.mkdtemp(prefix="gpu_train_check_"))
    if args.tiny:
        size, seconds, fps = (64, 48), 1.0, 10
    else:
        size, seconds, fps = (340, 256), 3.0, 30
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
    flow = "flow" in cfg.data.modalities
    t0 = time.perf_counter()
    make_kinetics(work / "kinetics", args.videos, args.unique, seconds, size, fps, flow=flow)
    print(
        f"generated {args.videos} videos{' and flow files' if flow else ''} in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    report = run_training(cfg, work / "kinetics", out, device=args.device, progress=False)
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines()]
    last = records[-1]
    bare = bare_clips_per_second(cfg, 8, torch.device(args.device), args.bare_steps)
    ratio = last["clips_per_second"] / bare
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {name}; config {Path(args.config).name}; run {wall:.0f} s")
    print(
        f"clip {cfg.data.num_frames}x{cfg.data.crop_size}x{cfg.data.crop_size}, batch "
        f"{cfg.train.batch_size}, workers {report['config']['data']['workers']} "
        f"(-1 = {os.cpu_count()} CPUs - 1), modalities {cfg.data.modalities}, visual "
        f"{cfg.model.visual}, audio {cfg.model.audio}, flow {cfg.model.flow if flow else '-'}"
    )
    print("| measure | value |\n|---|---|")
    print(f"| pipeline clips/s (last epoch, {last['step'] // len(records)} steps) | "
          f"{last['clips_per_second']:.1f} |")  # fmt: skip
    print(f"| bare forward/backward clips/s | {bare:.1f} |")
    print(f"| pipeline / bare | {ratio:.3f} (goal >= 0.90) |")
    print(f"| data-wait share of training time | {100 * last['data_wait_share']:.1f}% |")
    print(f"| evaluation seconds ({report['test']['fused']['videos']} videos) | "
          f"{report['timing']['eval_seconds']:.1f} |")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
