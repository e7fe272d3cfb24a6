"""Deterministic, resumable data order for training.

Two things make a resumed run see exactly the data an uninterrupted one would:

- ``ResumableSampler`` (a ``DistributedSampler``, so it also splits the data between DDP
  ranks) draws each epoch's order from ``(seed, epoch)`` alone, and can skip the images
  already done when training stopped inside an epoch, counted in that one order (not in
  batches or per process): a resume with another --batch-size or another number of
  processes continues at the next image, and no image of the epoch is trained twice or left out;
- ``SeededSamples`` reseeds the python / numpy / torch generators from ``(seed, epoch,
  image index)`` before loading each sample, so random augmentation of an image does not
  depend on which worker loads it, how many workers there are, or what ran before.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vision.datasets.base import substituted_samples
from vision.utils.misc import ignore_stop_signals


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends on nothing but ``(seed, epoch, index)``."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed the python, numpy and torch (CPU) global generators."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.default_generator.manual_seed(seed)


class SeededSamples(Dataset):
    """Wraps a dataset: ``self[(index, seed)]`` seeds the generators, then returns ``dataset[index]``.

    With ``count_skips``, returns ``(sample, skipped)`` instead: ``skipped`` is 1 when the
    requested image was unreadable and the sample is the next readable one (``CountingCollate``
    sums these per batch).
    """

    def __init__(self, dataset: Dataset, count_skips: bool = False) -> None:
        self.dataset = dataset
        self.count_skips = count_skips

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):
        index, seed = key
        seed_everything(seed)
        if not self.count_skips:
            return self.dataset[index]
        before = substituted_samples()
        sample = self.dataset[index]
        return sample, substituted_samples() - before


class CountingCollate:
    """``collate_fn`` over ``(sample, skipped)`` pairs -> ``(batch, skipped images in it)``."""

    def __init__(self, collate_fn: Callable | None) -> None:
        self.collate_fn = collate_fn or torch.utils.data.default_collate

    def __call__(self, items: list[tuple[Any, int]]) -> tuple[Any, int]:
        return self.collate_fn([sample for sample, _ in items]), sum(skipped for _, skipped in items)


class CountedBatches:
    """Iterates a loader of ``(batch, skipped)`` pairs, yielding the batches and summing the
    skipped images of the batches handed out so far in ``skipped_images``."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.skipped_images = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch, skipped in self.loader:
            self.skipped_images += skipped
            yield batch


class ReseededTransform:
    """Builds a fresh transform (``make()``) for every sample.

    ``TrainAugmentation(seed=None)`` draws from a generator it seeds from ``torch.initial_seed()``
    once per process; a fresh one per sample starts from the seed ``SeededSamples`` just set, so
    an image's augmentation depends only on ``(seed, epoch, index)``. Building one costs ~40 us,
    against ~10 ms for the augmentation itself.
    """

    def __init__(self, make: Callable[[], Callable]) -> None:
        self.make = make

    def __call__(self, *sample):
        return self.make()(*sample)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose order is a function of ``(seed, epoch)``, yielding ``(index, seed)``.

    ``skip`` drops the first ``skip`` images of the epoch's order, those every rank together
    trained before a stop (``DistributedSampler`` deals the order out round-robin, so after k
    images per rank on W ranks the first k * W are done, whatever the new rank count). The rest
    is dealt out as ``DistributedSampler`` does (padded with the order's first images to equal
    shares): with ``skip`` a multiple of the rank count, exactly the share it would have given.
    Without torch.distributed, pass ``num_replicas=1, rank=0``.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.skip = 0

    def set_position(self, epoch: int, skip: int = 0) -> None:
        """Epoch ``epoch``, its first ``skip`` images (of all ranks together) already trained."""
        self.set_epoch(epoch)
        self.skip = min(max(0, int(skip)), len(self.dataset))  # type: ignore[arg-type]

    def __len__(self) -> int:
        rest = len(self.dataset) - self.skip  # type: ignore[arg-type]
        return rest // self.num_replicas if self.drop_last else -(-rest // self.num_replicas)

    def _order(self) -> list[int]:
        if self.shuffle:  # DistributedSampler's own order
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            return torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        return list(range(len(self.dataset)))  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._order()
        rest = order[self.skip:]
        share = len(self)
        if self.drop_last:
            rest = rest[:share * self.num_replicas]
        elif rest:
            pad = share * self.num_replicas - len(rest)
            rest += (order * (1 + pad // len(order)))[:pad]
        for index in rest[self.rank::self.num_replicas]:
            yield index, sample_seed(self.seed, self.epoch, index)


def _seeded_loader(dataset: Dataset, sampler: "ResumableSampler", *, batch_size: int, num_workers: int,
                   seed: int, epoch: int, collate_fn: Callable | None, drop_last: bool, pin_memory: bool,
                   persistent: bool, count_skips: bool | None = None) -> DataLoader:
    """The ``DataLoader`` both loaders below build. Worker processes get their base seed from
    ``(seed, epoch)`` too, though ``SeededSamples`` makes the data independent of it. A
    persistent loader (or ``count_skips``) also counts unreadable images (``CountingCollate`` /
    ``CountedBatches``)."""
    generator = torch.Generator()
    generator.manual_seed(sample_seed(seed, epoch, 2**31 - 1))
    if persistent if count_skips is None else count_skips:
        samples, collate_fn = SeededSamples(dataset, count_skips=True), CountingCollate(collate_fn)
    else:
        samples = SeededSamples(dataset)
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_fn, drop_last=drop_last, generator=generator, pin_memory=pin_memory,
                      persistent_workers=persistent and num_workers > 0,
                      worker_init_fn=ignore_stop_signals if num_workers > 0 else None)


def build_loader(dataset: Dataset, *, batch_size: int, num_workers: int, seed: int, epoch: int,
                 collate_fn: Callable | None, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 drop_last: bool = False, skip_batches: int = 0, pin_memory: bool = False,
                 count_skips: bool = False) -> DataLoader | CountedBatches:
    """A loader for one epoch (``skip_batches`` already-done batches of every rank left out); its workers
    end with it.

    With ``count_skips`` (validation), a ``CountedBatches`` whose ``skipped_images`` says how
    many unreadable images were replaced by the next readable one, as in training.
    """
    sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed, shuffle=shuffle)
    sampler.set_position(epoch, skip_batches * batch_size * num_replicas)
    loader = _seeded_loader(dataset, sampler, batch_size=batch_size, num_workers=num_workers, seed=seed,
                            epoch=epoch, collate_fn=collate_fn, drop_last=drop_last, pin_memory=pin_memory,
                            persistent=False, count_skips=count_skips)
    return CountedBatches(loader) if count_skips else loader


class EpochLoader:
    """One ``DataLoader`` for a whole run, whose worker processes live from epoch to epoch.

    ``build_loader`` per epoch starts new workers every epoch: ~0.25 s per epoch (fork, then
    the first batch made from scratch) on a 2-core machine, a few percent of an epoch on a
    small dataset. Here ``epoch(e, skip_batches)`` only repositions the sampler (which runs in
    the main process) and returns the same loader; the data stay a function of ``(seed, epoch,
    index)`` alone (``SeededSamples``), so a resumed run sees exactly the same batches.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, num_workers: int, seed: int,
                 collate_fn: Callable | None, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 drop_last: bool = False, pin_memory: bool = False) -> None:
        self.batch_size, self.num_replicas = batch_size, num_replicas
        self.sampler = ResumableSampler(dataset, num_replicas=num_replicas, rank=rank, seed=seed, shuffle=shuffle)
        self.loader = _seeded_loader(dataset, self.sampler, batch_size=batch_size, num_workers=num_workers,
                                     seed=seed, epoch=0, collate_fn=collate_fn, drop_last=drop_last,
                                     pin_memory=pin_memory, persistent=True)

    def epoch(self, epoch: int, skip_batches: int = 0, skip_samples: int | None = None) -> CountedBatches:
        """The epoch's batches, its first ``skip_batches`` of every rank (or, given, the first
        ``skip_samples`` images of the epoch's order, all ranks together) left out; after (or
        during) the epoch, ``.skipped_images`` says how many unreadable images were replaced in the
        batches seen."""
        if skip_samples is None:
            skip_samples = skip_batches * self.batch_size * self.num_replicas
        self.sampler.set_position(epoch, skip_samples)
        return CountedBatches(self.loader)

    def batches_left(self) -> int:
        """Batches this rank still runs in the epoch at the current position."""
        n = len(self.sampler)
        return n // self.batch_size if self.loader.drop_last else -(-n // self.batch_size)


def batches_per_epoch(num_samples: int, batch_size: int, num_replicas: int = 1, drop_last: bool = False) -> int:
    """Batches each rank runs in one full epoch (``DistributedSampler`` pads to equal shares)."""
    per_rank = -(-num_samples // num_replicas)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)
