"""Isolated random state: loaders' own generators and samplers' epochs."""

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler

from blendopt._rng import SamplerEpochs, derive_seed, isolated_rng, loader_generators


def test_loader_generators_finds_each_generator_once():
    g1, g2 = torch.Generator(), torch.Generator()
    data = list(range(10))
    shuffled = DataLoader(data, batch_size=2, shuffle=True, generator=g1)  # loader and sampler
    sampled = DataLoader(
        data, batch_size=None, sampler=BatchSampler(RandomSampler(data, generator=g2), 2, False)
    )
    assert loader_generators([shuffled, sampled, shuffled, [1, 2]]) == [g1, g2]


def test_isolated_rng_seeds_and_restores_the_given_generators():
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    with isolated_rng(5, [g]):
        inside = torch.randint(0, 1000, (4,), generator=g)
    assert torch.equal(g.get_state(), state)
    expected = torch.randint(
        0, 1000, (4,), generator=torch.Generator().manual_seed(derive_seed(5, 0))
    )
    assert torch.equal(inside, expected)
    with isolated_rng(None, [g]):
        torch.randint(0, 1000, (4,), generator=g)
    assert torch.equal(g.get_state(), state)


def test_sampler_epochs_sets_and_restores():
    data = list(range(8))
    sampler = DistributedSampler(data, num_replicas=1, rank=0)
    sampler.set_epoch(3)
    loader = DataLoader(data, sampler=sampler)
    with SamplerEpochs([loader, loader]) as epochs:
        assert epochs.samplers == [sampler]
        epochs.set_epoch(11)
        assert sampler.epoch == 11
    assert sampler.epoch == 3
    assert "DistributedSampler" in repr(epochs)
    assert SamplerEpochs([[1, 2], DataLoader(data)]).samplers == []
