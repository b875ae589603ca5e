"""Accelerate run for test_frameworks on 2 CPU processes (gloo), launched with torchrun.

``python -m torch.distributed.run --nproc-per-node 2 -m tests.integration._accelerate_ddp
OUT_DIR``: each rank saves its blender's weights, history epochs and parameters to
``OUT_DIR/rank{r}.pt``.
"""

import sys
import warnings
from pathlib import Path

import accelerate
import torch
from torch.utils.data import DataLoader, TensorDataset

from blendopt import GradientBlender, Online, RetrainEstimator
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _loader(n_batches, seed):
    batches = make_batches(n_batches, seed=seed)
    return DataLoader(TensorDataset(*(torch.cat(t) for t in zip(*batches, strict=True))), 16)


def main(out_dir):
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    accelerator = accelerate.Accelerator(cpu=True)
    # prepared loaders are sharded: the main run and each rank's share of the estimate
    train, holdout, estimate_train = accelerator.prepare(
        _loader(8, 0), _loader(2, 2), _loader(4, 1)
    )
    model = make_model()
    blender = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        HEADS,
        RetrainEstimator(model, loss_fn, estimate_train, holdout, epochs=1, seed=3),
        schedule=Online(every=2, warmup=1),
    )
    model, optimizer = accelerator.prepare(model, blender)
    for _ in range(4):
        blender.start_epoch()
        for batch in train:
            optimizer.zero_grad()
            accelerator.backward(blender.blend(loss_fn(model, batch)))
            optimizer.step()
    torch.save(
        {
            "world": accelerator.num_processes,
            "weights": blender.weights,
            "epochs": [r["epoch"] for r in blender.history],
            "parameters": [
                p.detach().clone() for p in accelerator.unwrap_model(model).parameters()
            ],
        },
        Path(out_dir) / f"rank{accelerator.process_index}.pt",
    )
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
