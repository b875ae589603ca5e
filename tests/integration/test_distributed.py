"""Two processes (gloo): identical weights on every rank, equal to one process on the union."""

import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from blendopt import GradientBlender, Offline, RetrainEstimator, estimate_weights
from blendopt._rng import derive_seed
from tests.helpers import HEADS, loss_fn, make_batches, make_model

WORLD = 2


def _shard(rank):
    return make_batches(4, batch=8, seed=10 + rank), make_batches(2, batch=8, seed=20 + rank)


EMPTY = (torch.empty(0, 6), torch.empty(0, 5), torch.empty(0, dtype=torch.long))


def _with_empty(rank, train, holdout):
    """Rank 1 gets an empty batch where rank 0 gets an extra one: both ranks must skip it."""
    extra = make_batches(1, batch=8, seed=99)[0] if rank == 0 else EMPTY
    return [train[0], extra, *train[1:]], [*holdout, EMPTY] if rank == 1 else holdout


def _worker(rank, init_file, out_dir, empty):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        train, holdout = _shard(rank)
        est_train, est_holdout = _with_empty(rank, train, holdout) if empty else (train, holdout)
        model = make_model(seed=0)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        est = RetrainEstimator(ddp, loss_fn, est_train, est_holdout, probe=train[:2])
        opt = GradientBlender(
            torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9),
            HEADS,
            est,
            schedule=Offline(horizon=2),
        )
        opt.start_epoch()
        for batch in train:
            opt.zero_grad()
            opt.backward(loss_fn(ddp, batch))
            opt.step()
        opt.start_epoch()
        torch.save(
            {
                "weights": opt.weights,
                "estimate": opt.history[0]["estimate"],
                "stats": opt.statistics.history,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
        dist.barrier()  # no rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_agree_and_match_one_process_on_the_union(tmp_path, monkeypatch):
    # The estimate's loaders hold an empty batch on rank 1 only (skipped on both ranks).
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the host's network
    args = (str(tmp_path / "init"), str(tmp_path), True)
    mp.spawn(_worker, args=args, nprocs=WORLD, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0 == r1, "every rank holds identical weights, measurements and statistics"

    # One process on batches that concatenate the ranks' batches gives the same estimate:
    # averaged gradients of batch means = gradient of the union's mean; sums/counts reduced.
    shards = [_shard(r) for r in range(WORLD)]
    union = [
        tuple(torch.cat(parts) for parts in zip(*bs, strict=True))
        for bs in zip(*(s[0] for s in shards), strict=True)
    ]
    union_holdout = [
        tuple(torch.cat(parts) for parts in zip(*bs, strict=True))
        for bs in zip(*(s[1] for s in shards), strict=True)
    ]
    model = make_model(seed=0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = estimate_weights(
            model,
            loss_fn,
            union,
            union_holdout,
            optimizer=sgd,
            epochs=2,
            probe=union[:2],
            seed=derive_seed(0, 0),
        )
    for key, values in single.measurements.items():
        assert r0["estimate"]["measurements"][key] == pytest.approx(values, rel=1e-5), key
    assert r0["weights"] == pytest.approx(single.weights, rel=1e-4, abs=1e-7)
    # 2 epochs x 1 while training; V measured before and after each of the 3 copies: 1 + 3
    assert (
        "skipped 6 empty batches (2 while training the copies, 4 while measuring)"
        in (r0["estimate"]["notes"])
    )
