"""Lightning DDP run for test_frameworks (2 CPU processes, gloo, ``strategy="ddp_spawn"``).

``python -m tests.integration._lightning_ddp OUT_DIR``: each rank saves its blender's weights,
history epochs and parameters to ``OUT_DIR/rank{r}.pt``.
"""

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from blendopt import GradientBlender, Online, RetrainEstimator
from blendopt.integrations.lightning import GradientBlendCallback
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _loader(batches, *, shard):
    sampler = DistributedSampler(batches, shuffle=False) if shard else None
    return DataLoader(batches, batch_size=None, sampler=sampler)


class DDPModule(pl.LightningModule):
    def __init__(self, out_dir):
        super().__init__()
        self.net = make_model()
        self.out_dir = out_dir

    def training_step(self, batch, batch_idx):
        return self.optimizers().blend(loss_fn(self.net, batch))

    def configure_optimizers(self):
        # the estimator's loaders get a DistributedSampler: each rank estimates on its share
        estimator = RetrainEstimator(
            self.net,
            loss_fn,
            _loader(make_batches(4, seed=1), shard=True),
            _loader(make_batches(2, seed=2), shard=True),
            epochs=1,
            seed=3,
        )
        self.blender = GradientBlender(
            torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9),
            HEADS,
            estimator,
            schedule=Online(every=2, warmup=1),
        )
        return self.blender

    def on_train_end(self):
        torch.save(
            {
                "weights": self.blender.weights,
                "epochs": [r["epoch"] for r in self.blender.history],
                "kinds": [r["kind"] for r in self.blender.history],
                "parameters": [p.detach().clone() for p in self.net.parameters()],
            },
            Path(self.out_dir) / f"rank{self.global_rank}.pt",
        )


def main(out_dir):
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    trainer = pl.Trainer(
        max_epochs=4,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        callbacks=[GradientBlendCallback()],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(DDPModule(out_dir), train_dataloaders=_loader(make_batches(8), shard=False))


if __name__ == "__main__":
    main(sys.argv[1])
