"""Optimiser steps over a dataset: the order of every epoch, the share of each DDP rank, micro-batches.

Each step consumes one *global* batch of ``batch_size`` samples, in the same order whatever the number of
processes; rank ``r`` of ``W`` takes the ``r``-th contiguous share of it, split into ``accumulate``
micro-batches (see :mod:`downscale.train.engine` for how their losses add up to the global batch's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from downscale.train import distributed as dist

__all__ = ["Step", "StepLoader", "as_step_loader", "make_step_loader"]


@dataclass
class Step:
    """One optimiser step on this rank: its micro-batches (``dummy`` ones weigh nothing)."""

    index: int  # step within the epoch
    size: int  # samples in the global batch (all ranks)
    micro: list[tuple[dict[str, torch.Tensor], bool]]


class StepLoader:
    """Optimiser steps over ``dataset``.

    Each step is one global batch of ``batch_size`` consecutive indices of
    ``sampler`` (index order without one); this process (``rank`` of
    ``world_size``, by default those of the process group) takes its contiguous
    share, split into ``accumulate`` micro-batches.  A rank whose share is empty
    (a last batch smaller than the number of ranks) gets one *dummy* micro-batch
    that the engine weights by zero, so that every rank runs the same collective
    operations.  ``sampler.set_epoch`` is called by :meth:`set_epoch`, so the
    order of every epoch is reproducible and a resumed run can skip exactly the
    steps it has done (:meth:`steps` with ``start``).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        sampler: Any = None,
        accumulate: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or accumulate < 1:
            raise ValueError("batch_size and accumulate must be >= 1")
        self.dataset, self.sampler = dataset, sampler
        self.batch_size, self.accumulate = int(batch_size), int(accumulate)
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self._rank, self._world = rank, world_size
        self.epoch = 0

    @property
    def rank(self) -> int:
        return dist.get_rank() if self._rank is None else self._rank

    @property
    def world_size(self) -> int:
        return dist.get_world_size() if self._world is None else self._world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        """Optimiser steps per epoch."""
        return math.ceil(len(self.dataset) / self.batch_size)

    def order(self) -> list[int]:
        return list(self.sampler) if self.sampler is not None else list(range(len(self.dataset)))

    def plan(self) -> list[tuple[int, list[tuple[list[int], bool]]]]:
        """Per step: (global batch size, [(indices of a micro-batch of this rank, dummy)])."""
        order, out = self.order(), []
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            share = dist.shard(batch, self.world_size, self.rank)
            micro = [(m, False) for i in range(self.accumulate) if (m := dist.shard(share, self.accumulate, i))]
            out.append((len(batch), micro or [(batch[:1], True)]))
        return out

    def steps(self, start: int = 0) -> Iterator[Step]:
        """The steps of the current epoch from step ``start`` on (earlier ones are not read)."""
        from torch.utils.data import DataLoader

        plan = self.plan()[start:]
        if not plan:
            return
        flat = [idx for _, micro in plan for idx, _ in micro]
        generator = torch.Generator().manual_seed(int(self.seed) * 100_003 + self.epoch)  # never the global RNG
        loader = DataLoader(
            self.dataset,
            batch_sampler=flat,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=generator,
        )
        batches = iter(loader)
        for k, (size, micro) in enumerate(plan):
            yield Step(start + k, size, [(next(batches), dummy) for _, dummy in micro])


def as_step_loader(data: Any) -> StepLoader | None:
    """A :class:`StepLoader` from itself or from a plain ``torch.utils.data.DataLoader``."""
    if data is None or isinstance(data, StepLoader):
        return data
    from torch.utils.data import DataLoader, SequentialSampler

    if isinstance(data, DataLoader):
        sampler = None if isinstance(data.sampler, SequentialSampler) else data.sampler
        return StepLoader(data.dataset, data.batch_size or 1, sampler=sampler, num_workers=data.num_workers)
    raise TypeError(f"expected a StepLoader or a DataLoader, got {type(data).__name__}")


def make_step_loader(
    dataset: Any, batch_size: int, *, shuffle: bool, seed: int, num_workers: int, accumulate: int = 1
) -> StepLoader:
    """Optimiser steps of one global batch each (split over DDP ranks and ``accumulate`` micro-batches)."""
    from downscale.data.dataset import BlockShuffleSampler

    if hasattr(dataset, "make_sampler"):  # several sources: every batch from one of them
        sampler = dataset.make_sampler(batch_size, seed) if shuffle else None
    else:
        block = len(dataset) if dataset.arrays.in_memory else 256
        sampler = BlockShuffleSampler(len(dataset), block=max(block, 1), seed=seed) if shuffle else None
    return StepLoader(
        dataset,
        batch_size,
        sampler=sampler,
        accumulate=accumulate,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        seed=seed,
    )
