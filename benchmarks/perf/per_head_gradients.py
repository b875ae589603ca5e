"""Cost of per-head gradients, the ingredient of the gradient-level estimator (Proposition 1).

``python -m benchmarks.perf.per_head_gradients`` times, on the synthetic_av late-fusion model
(batch 64, one thread, CPU time of this process), as a ratio to one plain training step:

- ``grad_loop_all``: K calls of ``torch.autograd.grad(L_k, all params, retain_graph=True)``;
- ``grad_batched_all``: one ``torch.autograd.grad`` of the stacked losses with
  ``is_grads_batched=True`` (vmap over one-hot output gradients, ``torch.func`` machinery);
- ``grad_loop_private``: K calls over each head's private parameters only (its classifier or
  the fusion layers), the estimator's default: short backward passes;
- ``read_blended_private``: no extra pass: the private parameters' ``.grad`` after the ordinary
  blended backward, divided by w_k (needs w_k > 0);
- ``holdout_forward``: one eval-mode forward of a holdout batch of 64 (needed by every variant).

Each variant runs right after a training step's forward pass, rounds interleaved; the median
ratio is printed. Then the end-to-end overhead of ``RollingEstimator`` (defaults, no probe): blocks
of ``interval`` steps of a naive blender and of a rolling one on twin models, interleaved block
by block (one measurement per rolling block), median ratio of their CPU times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import blendopt
from benchmarks.runner import SETUPS, TensorBatches, loss_fn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    setup = SETUPS["synthetic_av"]
    data = setup.load("train", 0)
    torch.manual_seed(0)
    model = setup.build_model(data)
    heads = model.head_names
    params = [p for p in model.parameters() if p.requires_grad]
    batches = list(TensorBatches(data, 64, shuffle=True))
    sgd = torch.optim.SGD(params, lr=0.01)
    weights = torch.full((len(heads),), 1.0 / len(heads))

    # private parameters: reached by one head's loss only
    losses = loss_fn(model, batches[0])
    reached = {
        h: {
            i
            for i, g in enumerate(
                torch.autograd.grad(losses[h], params, retain_graph=True, allow_unused=True)
            )
            if g is not None
        }
        for h in heads
    }
    private = {
        h: [
            params[i]
            for i in sorted(reached[h] - set().union(*(reached[o] for o in heads if o != h)))
        ]
        for h in heads
    }

    def step(batch):
        sgd.zero_grad()
        out = loss_fn(model, batch)
        (torch.stack([out[h] for h in heads]) @ weights).backward()
        sgd.step()

    def grad_loop_all(out):
        for h in heads:
            torch.autograd.grad(out[h], params, retain_graph=True, allow_unused=True)

    def grad_batched_all(out):
        stacked = torch.stack([out[h] for h in heads])
        torch.autograd.grad(
            stacked,
            params,
            grad_outputs=torch.eye(len(heads)),
            is_grads_batched=True,
            retain_graph=True,
            allow_unused=True,
        )

    def grad_loop_private(out):
        for h in heads:
            torch.autograd.grad(out[h], private[h], retain_graph=True)

    def read_blended_private(out):
        for k, h in enumerate(heads):
            _ = [p.grad / weights[k] for p in private[h] if p.grad is not None]

    def holdout_forward(out):
        model.eval()
        with torch.enable_grad():
            loss_fn(model, batches[1])
        model.train()

    variants = {
        "grad_loop_all": grad_loop_all,
        "grad_batched_all": grad_batched_all,
        "grad_loop_private": grad_loop_private,
        "read_blended_private": read_blended_private,
        "holdout_forward": holdout_forward,
    }
    times: dict[str, list[float]] = {k: [] for k in ["step", *variants]}
    for r in range(args.rounds):
        batch = batches[r % len(batches)]
        t = time.process_time()
        step(batch)
        times["step"].append(time.process_time() - t)
        for name, fn in variants.items():
            out = loss_fn(model, batch)
            t = time.process_time()
            fn(out)
            times[name].append(time.process_time() - t)
    base = statistics.median(times["step"])
    print(f"plain step: {1000 * base:.2f} ms (median of {args.rounds}, CPU time, 1 thread)")
    for name in variants:
        print(f"{name:22s} {statistics.median(times[name]) / base:.3f} × a step")
    print(_end_to_end(setup, data, batches, args.rounds))


def _end_to_end(setup, data, batches, rounds: int) -> str:
    holdout = list(TensorBatches(data, 64, shuffle=False))[:4]
    runs = {}
    for kind in ("naive", "rolling"):
        torch.manual_seed(0)
        model = setup.build_model(data)
        heads = model.head_names
        sgd = torch.optim.SGD(model.parameters(), lr=0.01)
        estimator = (
            blendopt.RollingEstimator(model, loss_fn, holdout)
            if kind == "rolling"
            else {h: 1.0 / len(heads) for h in heads}
        )
        runs[kind] = (model, blendopt.GradientBlender(sgd, heads, estimator))
    interval = runs["rolling"][1].estimator.interval
    ratios = []
    step = 0
    for _ in range(max(rounds // 4, 10)):
        block = {}
        for kind, (model, opt) in runs.items():
            t = time.process_time()
            for i in range(interval):
                batch = batches[(step + i) % len(batches)]
                opt.zero_grad()
                opt.backward(loss_fn(model, batch))
                opt.step()
            block[kind] = time.process_time() - t
        step += interval
        ratios.append(block["rolling"] / block["naive"])
    ratios.sort()
    return (
        f"RollingEstimator defaults, end to end: {statistics.median(ratios):.3f} × naive "
        f"(median of {len(ratios)} interleaved {interval}-step blocks; p25-p75 "
        f"{ratios[len(ratios) // 4]:.3f}-{ratios[(3 * len(ratios)) // 4]:.3f})"
    )


if __name__ == "__main__":
    main()
