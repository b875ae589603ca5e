"""Exact G-Blend estimate (Algorithm 1): the vmap engine against the lockstep loop, per model.

``python -m benchmarks.perf.exact_engines [--datasets synthetic_av mfeat digits] [--rounds 5]``
builds each embedded dataset's late-fusion model exactly as the main job does
(``benchmarks/runner/_setups.py``: batch 64, 10% holdout, its train probe), then times, in
one process and interleaved round by round (the order alternates, so drift on a shared machine
hits both alike):

- **copy training**, per step (one batch through all K copies): the lockstep loop
  (``blendopt.retrain.train_copies``: K forwards, K backwards, K optimizer steps) and the
  vmap engine (``blendopt.retrain.train_copies_vmap``: one of each);
- **measurements** of one estimate: T' and V before (the checkpoint) and after (each of the K
  copies), in eval mode with the top-1 error metric, as ``estimate_weights`` does.

It prints the per-step medians, the vmap/loop ratio (median of per-round ratios) and the
share of the measurements in one online estimate (horizon: the main job's ``Online.every``
epochs) for each engine; and what a timed trial (:func:`choose_engine`, with
:func:`time_engines`) would pick. The library does not time engines: ``engine="auto"`` is the
loop, and the vmap engine is opt-in (``engine="vmap"``) where these numbers say it pays.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import blendopt
from benchmarks.runner._batches import TensorBatches
from benchmarks.runner._methods import make_optimizer
from benchmarks.runner._setups import SETUPS
from benchmarks.runner._train import BATCH_SIZE, HOLDOUT, loss_fn, online_schedule, predict
from blendopt.retrain import (
    CopyTraining,
    TrainPlan,
    clone_optimizer,
    make_copies,
    supports_vmap,
    train_copies,
    train_copies_vmap,
)


@dataclass
class Case:
    """One dataset's model, optimizer and loaders, as the main job builds them."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    heads: list[str]
    train: TensorBatches
    holdout: TensorBatches
    probe: TensorBatches
    online_epochs: int

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train)


def _to_device(dataset: Any, device: torch.device) -> Any:
    moved = copy.copy(dataset)
    moved.tensors = {k: t.to(device) for k, t in dataset.tensors.items()}
    moved.targets = dataset.targets.to(device)
    return moved


def build_case(name: str, optimizer: str = "sgd", seed: int = 0, device: str = "cpu") -> Case:
    """The main job's model and data for dataset ``name`` (see ``run_one``), on ``device``."""
    setup = SETUPS[name]
    full = setup.load("train", seed)
    split = blendopt.holdout_split(len(full), holdout=HOLDOUT, labels=full.targets, seed=seed)
    train = full.subset(split.train)
    torch.manual_seed(seed)
    model = setup.build_model(train).to(device)
    full, train = _to_device(full, torch.device(device)), _to_device(train, torch.device(device))
    return Case(
        name=name,
        model=model,
        optimizer=make_optimizer(optimizer, model.parameters(), setup.lr),
        heads=model.head_names,
        train=TensorBatches(train, BATCH_SIZE, shuffle=True),
        holdout=TensorBatches(full.subset(split.holdout), 512, shuffle=False),
        probe=TensorBatches(full.subset(split.probe), 512, shuffle=False),
        online_epochs=online_schedule(setup.epochs).every,
    )


def _training(case: Case, steps: int) -> CopyTraining:
    plan = TrainPlan(epochs=None, steps=steps)
    return CopyTraining(loss_fn, case.train, case.heads, plan, optimizer=case.optimizer)


def loop_engine(case: Case, steps: int) -> dict[str, nn.Module]:
    """The lockstep loop of ``estimate_weights`` for ``steps`` batches (copies included)."""
    training = _training(case, steps)
    # as estimate_weights makes them: deep copy, cloned optimizer, own dropout stream
    copies = make_copies(case.model, case.heads, training)
    train_copies(copies, training)
    return {c.head: c.model for c in copies}


def vmap_engine(case: Case, steps: int) -> dict[str, nn.Module]:
    """The vmap engine for ``steps`` batches (stacking and unstacking included)."""
    result = train_copies_vmap(case.model, case.heads, _training(case, steps))
    result.check_finite()
    return result.models


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def time_engines(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    batch: Any,
    heads: list[str],
    *,
    steps: int = 3,
    engines: tuple[str, ...] = ("loop", "vmap"),
    repeats: int = 1,
) -> dict[str, float]:
    """Seconds per copy-training step of each engine on repeats of ``batch``.

    A step is one batch through all K copies: for the loop, each copy's forward, its head's
    backward and its optimizer step (as ``estimate_weights`` runs them); for vmap, one of
    each over the stack. Both time steps 1..``steps`` after a warm-up step 0, so set-up
    (copying, stacking) is excluded: vmap's clock reads are taken as the engine asks its
    batch stream for the next batch (a difference of two whole runs was noise-dominated and
    could come out at 0). Runs in an isolated random state; ``model`` is not changed.
    ``repeats``: time the engines this many times, alternating, and keep each one's fastest
    (robust to load spikes on a shared machine).

    Returns:
        engine -> seconds per step.
    """
    device = next(model.parameters()).device
    unknown = [e for e in engines if e not in ("loop", "vmap")]
    if unknown:
        raise ValueError(f"Parameter `engines` should hold 'loop' or 'vmap'. Found {unknown[0]!r}.")

    def clock() -> float:
        _synchronize(device)
        return time.perf_counter()

    def loop() -> float:
        copies = {h: copy.deepcopy(model) for h in heads}
        if isinstance(optimizer, torch.optim.Optimizer):
            opts = {h: clone_optimizer(optimizer, model, net) for h, net in copies.items()}
        else:
            opts = {h: optimizer(list(net.parameters())) for h, net in copies.items()}
        for net in copies.values():
            net.train()
        start = 0.0
        for i in range(steps + 1):  # step 0 is a warm-up (optimizer state, allocations)
            if i == 1:
                start = clock()
            for h, net in copies.items():
                opts[h].zero_grad(set_to_none=True)
                loss_fn(net, batch)[h].backward()
                opts[h].step()
        return (clock() - start) / steps

    def vmapped() -> float:
        stamps: list[float] = []

        def feed() -> Iterator[Any]:  # the engine asks for batch i once step i - 1 is done
            for _ in range(steps + 1):  # step 0 is a warm-up, as in the loop
                stamps.append(clock())
                yield batch
            stamps.append(clock())

        plan = TrainPlan(epochs=1, steps=None)
        train_copies_vmap(
            model, heads, CopyTraining(loss_fn, feed(), heads, plan, optimizer=optimizer)
        )
        return (stamps[-1] - stamps[1]) / steps

    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=_cuda_devices()):
        for r in range(max(1, repeats)):
            for name in engines if r % 2 == 0 else tuple(reversed(engines)):
                seconds = loop() if name == "loop" else vmapped()
                out[name] = min(out.get(name, seconds), seconds)
    return out


def choose_engine(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]],
    batch: Any,
    heads: list[str],
    *,
    steps: int = 3,
    repeats: int = 3,
    margin: float = 0.9,
) -> str:
    """The engine a timed trial picks: ``"vmap"`` where it is exact and measurably faster.

    ``"loop"`` if :func:`blendopt.retrain.supports_vmap` refuses the model or optimizer (with
    a trial forward on ``batch``). Otherwise both engines are timed on ``steps`` repeats of
    ``batch``, ``repeats`` times alternating, keeping each one's fastest (:func:`time_engines`),
    and ``"vmap"`` is kept only if its step takes less than ``margin`` times the loop's (the
    loop is the reference, and its dropout draws are the documented ones). Measured on the CPU
    (1 thread): vmap took 0.98-1.31x the loop's step with SGD-momentum and 1.21-1.93x with Adam
    on the three embedded models, as its backward and optimizer step cover every head's
    parameters in every copy.
    """
    ok, _ = supports_vmap(optimizer, model, loss_fn=loss_fn, batch=batch, heads=heads)
    if not ok:
        return "loop"
    times = time_engines(model, optimizer, loss_fn, batch, heads, steps=steps, repeats=repeats)
    return "vmap" if times["vmap"] < margin * times["loop"] else "loop"


def measurements(case: Case, copies: dict[str, nn.Module]) -> None:
    """T' and V of the checkpoint and of every copy (top-1 error), as one estimate does."""
    metric = blendopt.top1_error(predict)
    for net in (case.model, *copies.values()):
        blendopt.measure(net, metric, case.probe, case.heads)
        blendopt.measure(net, metric, case.holdout, case.heads)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def compare(case: Case, rounds: int, steps: int) -> dict[str, float]:
    """Interleaved per-step times of both engines and the measurement time of one estimate."""
    engines = {"loop": loop_engine, "vmap": vmap_engine}
    for fn in engines.values():  # warm-up
        fn(case, 2)
    per_step: dict[str, list[float]] = {name: [] for name in engines}
    measure_s: list[float] = []
    ratios = []
    for r in range(rounds):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        copies = None
        for name in order:
            seconds, copies = _timed(lambda fn=engines[name]: fn(case, steps))
            per_step[name].append(seconds / steps)
        ratios.append(per_step["vmap"][-1] / per_step["loop"][-1])
        measure_s.append(_timed(lambda copies=copies: measurements(case, copies))[0])
    loop = statistics.median(per_step["loop"])
    vmap = statistics.median(per_step["vmap"])
    measure = statistics.median(measure_s)
    train_online = case.online_epochs * case.steps_per_epoch
    return {
        "loop_ms": 1e3 * loop,
        "vmap_ms": 1e3 * vmap,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "measure_s": measure,
        "online_steps": train_online,
        "measure_share_loop": measure / (measure + train_online * loop),
        "measure_share_vmap": measure / (measure + train_online * vmap),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "adam", "adagrad"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="batches per timed run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"Exact estimate engines on {where}, {args.optimizer}, batch {BATCH_SIZE}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds of {args.steps} steps; "
        f"torch {torch.__version__}"
    )
    print(
        f"{'dataset':13s} {'K':>2s} {'loop ms/step':>12s} {'vmap ms/step':>12s} "
        f"{'vmap/loop':>9s} {'(min-max)':>12s} {'measure s':>9s} {'online steps':>12s} "
        f"{'meas. share loop':>16s} {'vmap':>6s} {'trial':>5s}"
    )
    for name in args.datasets:
        case = build_case(name, args.optimizer, device=args.device)
        row = compare(case, args.rounds, args.steps)
        batch = next(iter(case.train))
        trial = choose_engine(case.model, case.optimizer, loss_fn, batch, case.heads)
        print(
            f"{name:13s} {len(case.heads):2d} {row['loop_ms']:12.2f} {row['vmap_ms']:12.2f} "
            f"{row['ratio']:9.3f} {row['ratio_min']:5.2f}-{row['ratio_max']:5.2f} "
            f"{row['measure_s']:9.3f} {row['online_steps']:12d} "
            f"{row['measure_share_loop']:16.3f} {row['measure_share_vmap']:6.3f} {trial:>5s}"
        )


if __name__ == "__main__":
    main()
