"""Samples for torch: ``x``, ``f``, ``s``, ``y``, ``m`` (see ARCHITECTURE.md).

:func:`materialise` normalises the paired data of some time indices, one time
block at a time, into either memory (small data) or a zarr store on disk (data
that does not fit), so the whole record is never loaded at once.
:class:`SampleDataset` reads samples from either; with a zarr store it fetches
whole batches in one read (``__getitems__``), and :class:`BlockShuffleSampler`
keeps those reads local while still shuffling.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import torch
    import zarr

    from downscale.data.normalise import Normaliser
    from downscale.data.pairing import PairedData

__all__ = ["BlockShuffleSampler", "SampleArrays", "SampleDataset", "materialise"]

_BLOCK = 256  # time steps per read/write block (and zarr chunk)


@dataclass
class SampleArrays:
    # x, y and m are numpy arrays or zarr.Arrays (both as is).  Any, not that union: zarr types every read
    # (``a[i]``, ``a.oindex[i]``) as "an array or a scalar", so each read of the union would need a cast.
    x: Any  # [N, C, h, w] float32 (numpy or zarr)
    f: np.ndarray  # [N, F] float32
    s: np.ndarray  # [S, H, W] float32
    y: Any  # [N, V, H, W] float32, NaN replaced by 0
    m: Any  # [N, V, H, W] uint8, 1 = valid
    indices: np.ndarray  # time indices into the paired data

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.x, np.ndarray)


def _nbytes(paired: PairedData, n: int) -> int:
    per = paired.x[0].size * 4 + paired.y[0].size * 5
    return int(per) * n


def materialise(
    paired: PairedData,
    normaliser: Normaliser,
    indices: np.ndarray,
    *,
    cache: str | Path | None = None,
    name: str = "samples",
    max_memory: int = 2 << 30,
) -> SampleArrays:
    """Normalise the samples at ``indices``; to a zarr store when too big for memory.

    ``cache`` forces the zarr store into that folder; without it, data larger
    than ``max_memory`` bytes raises a clear error asking for one.
    """
    indices = np.asarray(indices, dtype=int)
    n = len(indices)
    xs, ys = paired.x, paired.y
    cshape, fshape = (len(paired.predictors), *xs.shape[-2:]), (len(paired.targets), *ys.shape[-2:])
    use_zarr = cache is not None or _nbytes(paired, n) > max_memory
    x: np.ndarray | zarr.Array
    y: np.ndarray | zarr.Array
    m: np.ndarray | zarr.Array
    if use_zarr:
        import zarr

        if cache is None:
            from downscale.errors import DataError

            raise DataError(
                f"the {name} need {_nbytes(paired, n) / 2**30:.1f} GiB, more than fits in memory",
                fix="set data.cache in the recipe to a folder for the zarr sample cache",
            )
        root = zarr.open_group(str(Path(cache) / f"{name}.zarr"), mode="w")
        chunk = min(_BLOCK, max(n, 1))
        x = root.create_array("x", shape=(n, *cshape), chunks=(chunk, *cshape), dtype="float32")
        y = root.create_array("y", shape=(n, *fshape), chunks=(chunk, *fshape), dtype="float32")
        m = root.create_array("m", shape=(n, *fshape), chunks=(chunk, *fshape), dtype="uint8")
    else:
        x = np.empty((n, *cshape), np.float32)
        y = np.empty((n, *fshape), np.float32)
        m = np.empty((n, *fshape), np.uint8)

    for start in range(0, n, _BLOCK):
        idx = indices[start : start + _BLOCK]
        xb = np.asarray(xs.isel(time=idx).values, dtype=np.float32)
        yb = np.asarray(ys.isel(time=idx).values, dtype=np.float32)
        xb = normaliser.normalise("predictors", xb, paired.predictors, axis=1)
        valid = np.isfinite(yb)
        yb = np.where(valid, normaliser.normalise("targets", yb, paired.targets, axis=1), 0.0)
        bad = ~np.isfinite(xb)
        if bad.any():
            from downscale.errors import DataError

            t, c = np.argwhere(bad)[0][:2]
            raise DataError(
                "NaN or infinite predictor value",
                variable=paired.predictors[c],
                found=f"on {paired.time.values[idx[t]]}",
                fix="fill or drop the missing predictor values, or check the coarse grid covers the domain",
            )
        sl = slice(start, start + len(idx))
        x[sl], y[sl], m[sl] = xb, yb.astype(np.float32), valid.astype(np.uint8)

    if paired.static is not None:
        s = normaliser.normalise("static", np.asarray(paired.static.values, np.float32), paired.static_names, axis=0)
        s = np.nan_to_num(s, nan=0.0)
    else:
        s = np.zeros((0, *ys.shape[-2:]), np.float32)
    return SampleArrays(x=x, f=paired.f[indices].astype(np.float32), s=s, y=y, m=m, indices=indices)


class SampleDataset:
    """A map-style torch dataset over :class:`SampleArrays`."""

    def __init__(self, arrays: SampleArrays) -> None:
        import torch

        self.arrays = arrays
        self._s = torch.from_numpy(arrays.s)

    def __len__(self) -> int:
        return len(self.arrays)

    def _sample(self, x: ArrayLike, f: ArrayLike, y: ArrayLike, m: ArrayLike) -> dict[str, torch.Tensor]:
        import torch

        return {
            "x": torch.from_numpy(np.ascontiguousarray(x)),
            "f": torch.from_numpy(np.ascontiguousarray(f)),
            "s": self._s,
            "y": torch.from_numpy(np.ascontiguousarray(y)),
            "m": torch.from_numpy(np.ascontiguousarray(m)).bool(),
        }

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        a = self.arrays
        return self._sample(a.x[i], a.f[i], a.y[i], a.m[i])

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """One read per batch: sorted orthogonal selection from memory or zarr."""
        a = self.arrays
        order = np.asarray(indices)
        uniq, inverse = np.unique(order, return_inverse=True)
        if a.in_memory:
            xb, yb, mb = a.x[uniq], a.y[uniq], a.m[uniq]
        else:
            xb, yb, mb = a.x.oindex[uniq], a.y.oindex[uniq], a.m.oindex[uniq]
        fb = a.f[uniq]
        return [self._sample(xb[j], fb[j], yb[j], mb[j]) for j in inverse]


class BlockShuffleSampler:
    """Shuffles blocks of consecutive samples, then samples within each block.

    With a zarr cache this keeps every batch inside one or two chunks, so
    streaming from disk stays fast; with in-memory data it is a plain shuffle
    when ``block`` >= the dataset length.  Seeded per epoch (``set_epoch``).
    """

    def __init__(self, n: int, block: int = _BLOCK, seed: int = 0) -> None:
        self.n, self.block, self.seed, self.epoch = n, block, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        starts = np.arange(0, self.n, self.block)
        rng.shuffle(starts)
        for s in starts:
            yield from (s + rng.permutation(min(self.block, self.n - s))).tolist()
