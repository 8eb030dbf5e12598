"""Several pairs or domains in one training run (multi-source pretraining).

Each source is another recipe (``transfer.sources: [{recipe: ..., weight: ...}]``): it is
paired by the one data layer, keeps *its own* normaliser (fitted on its own training
days), and its samples are arranged to the main recipe's variables by name -- missing
predictors are an error, a missing static field is zero (its mean), a missing target is
masked out of the loss.  Grids differ between sources, so every global batch comes from
one source: :class:`SourceBatchSampler` draws whole batches, a source's share of them
set by the sampling weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from downscale.errors import DataError

__all__ = ["MixedDataset", "SourceBatchSampler", "mix_sources"]


@dataclass
class _Part:
    name: str
    dataset: Any  # SampleDataset
    weight: float


class MixedDataset:
    """The concatenation of single-source datasets; a batch must come from one of them."""

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p.dataset) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return k, int(i - self.offsets[k])

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, j = self._locate(int(i))
        return self.parts[k].dataset[j]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        located = [self._locate(int(i)) for i in indices]
        sources = {k for k, _ in located}
        if len(sources) != 1:
            raise RuntimeError("a batch mixes sources; use SourceBatchSampler")
        k = located[0][0]
        return self.parts[k].dataset.__getitems__([j for _, j in located])

    def make_sampler(self, batch_size: int, seed: int) -> SourceBatchSampler:
        return SourceBatchSampler(
            [len(p.dataset) for p in self.parts], [p.weight for p in self.parts], batch_size, seed
        )


class SourceBatchSampler:
    """An order of global indices in which every run of ``batch_size`` comes from one source.

    An epoch has ``ceil(N / batch_size)`` batches (N: all samples); source ``i`` gets a share
    proportional to ``weights[i]`` (largest remainders), filled from reshuffles of its samples.
    Batches are interleaved at random; all of it is seeded by (seed, epoch).
    """

    def __init__(self, sizes: list[int], weights: list[float], batch_size: int, seed: int = 0) -> None:
        self.sizes, self.batch_size, self.seed, self.epoch = list(sizes), int(batch_size), seed, 0
        w = np.array([wt if n else 0.0 for wt, n in zip(weights, sizes, strict=True)], float)
        total = int(np.ceil(sum(sizes) / self.batch_size))
        quota = w / w.sum() * total
        n = np.floor(quota).astype(int)
        for i in np.argsort(-(quota - n), kind="stable")[: total - n.sum()]:
            n[i] += 1
        self.batches = n.tolist()
        self.offsets = np.cumsum([0] + self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.batches) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        batches: list[list[int]] = []
        for k, (size, count) in enumerate(zip(self.sizes, self.batches, strict=True)):
            need = count * self.batch_size
            reps = int(np.ceil(need / size)) if size else 0
            order = np.concatenate([rng.permutation(size) for _ in range(reps)])[:need] if reps else np.array([], int)
            order = order + self.offsets[k]
            batches += [order[b * self.batch_size : (b + 1) * self.batch_size].tolist() for b in range(count)]
        for b in rng.permutation(len(batches)):
            yield from batches[b]


def _arrange(
    paired: Any, predictors: list[str], targets: list[str], static: list[str], forcings: list[str], name: str
) -> Any:
    """The source's paired data with the main recipe's channels, by name."""
    import dataclasses

    import xarray as xr

    missing = [p for p in predictors if p not in paired.predictors]
    if missing:
        raise DataError(
            f"source '{name}' lacks the predictor(s) {', '.join(missing)}",
            found=", ".join(paired.predictors),
            fix="give every source the main recipe's predictors",
        )
    if list(paired.forcing_names) != list(forcings):
        raise DataError(
            f"source '{name}' has other forcings",
            found=", ".join(paired.forcing_names),
            expected=", ".join(forcings),
            fix="use the same data.forcings in every source",
        )
    x = paired.x.sel(channel=predictors)
    y = paired.y.reindex(channel=targets)  # a missing target is NaN: masked out of the loss
    s = None
    if static:
        fine = paired.y.isel(time=0, channel=0, drop=True)
        fields = []
        for n in static:
            if n in paired.static_names:
                fields.append(paired.static.sel(channel=n).reset_coords(drop=True))
            else:
                fields.append(xr.full_like(fine, np.nan, dtype=np.float32).reset_coords(drop=True))
        s = xr.concat(fields, dim="channel").assign_coords(channel=static).transpose("channel", *fine.dims).load()
    return dataclasses.replace(paired, x=x, y=y, static=s)


def mix_sources(
    recipe: Any, paired: Any, train_set: Any, *, seed: int = 0
) -> tuple[MixedDataset, list[dict[str, Any]]]:
    """The training set of ``recipe`` mixed with those of its ``transfer.sources``; and a record of them."""
    from downscale.data.dataset import SampleDataset, materialise
    from downscale.data.normalise import Normaliser, Stats
    from downscale.data.pairing import build_pairs
    from downscale.data.shots import select_shots
    from downscale.recipe import load_recipe

    cfg = recipe.transfer
    parts = [_Part(recipe.name, train_set, cfg.weight)]
    record = [{"name": recipe.name, "weight": cfg.weight, "samples": len(train_set)}]
    for spec in cfg.sources:
        src = load_recipe(recipe.resolve(spec.recipe), list(spec.set))
        sp = build_pairs(src)
        periods = src.data.periods
        idx = sp.indices(periods.train, exclude=periods.validation)
        if src.data.shots is not None:
            idx = select_shots(sp.time, idx, src.data.shots, season=periods.train.season).train
        raw = sp
        sp = _arrange(sp, paired.predictors, paired.targets, paired.static_names, paired.forcing_names, src.name)
        have_t = [t for t in paired.targets if t in raw.targets]
        have_s = [n for n in paired.static_names if n in raw.static_names]
        if not have_t:
            raise DataError(
                f"source '{src.name}' has none of the targets {', '.join(paired.targets)}",
                found=", ".join(raw.targets),
                fix="mix sources that share at least one target",
            )
        own = Normaliser.fit(
            sp.x.isel(time=idx),
            raw.y.sel(channel=have_t).isel(time=idx),
            raw.static.sel(channel=have_s) if have_s and raw.static is not None else None,
        )
        # a target or static field the source lacks is all NaN: any statistics do (masked / zero)
        for t in paired.targets:
            own.targets.setdefault(t, Stats(0.0, 1.0))
        for n in paired.static_names:
            own.static.setdefault(n, Stats(0.0, 1.0))
        data = SampleDataset(materialise(sp, own, idx, name=f"source-{src.name}"))
        parts.append(_Part(src.name, data, spec.weight))
        record.append(
            {
                "name": src.name,
                "recipe": spec.recipe,
                "set": list(spec.set),
                "weight": spec.weight,
                "samples": len(idx),
                "framework": src.framework,
                "fine_grid": sp.fine_grid.describe(),
                "normaliser": own.to_dict(),
            }
        )
    return MixedDataset(parts), record
