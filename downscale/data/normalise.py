"""The normaliser: per-variable statistics fitted on the training period only.

It is fitted lazily (one dask ``compute`` for every statistic), stored in the
bundle, and never recomputed at apply time.  Statistics are one scalar per
variable, not per cell, so that a model stays usable on another grid.

Transforms:
- ``standard``: (v - mean) / std  (temperatures, pressure, humidity, ...);
- ``scale``: v / std, keeping zero at zero (precipitation: a dry day stays 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import xarray as xr

from downscale.data.variables import VARIABLES, parse_level_name
from downscale.errors import DataError

if TYPE_CHECKING:
    import torch

__all__ = ["Normaliser", "Stats"]

Transform = Literal["standard", "scale"]


def default_transform(name: str) -> Transform:
    """``scale`` for precipitation (of the canonical table; not its ``_clim`` static field), else ``standard``."""
    base, _ = parse_level_name(name)
    spec = VARIABLES.get(base)
    return "scale" if spec is not None and spec.kind == "precipitation" else "standard"


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float
    transform: Transform = "standard"

    @property
    def shift(self) -> float:
        return self.mean if self.transform == "standard" else 0.0

    @property
    def scale(self) -> float:
        if self.transform == "standard":
            return self.std
        return float(np.sqrt(self.std**2 + self.mean**2))  # root mean square


@dataclass
class Normaliser:
    predictors: dict[str, Stats]
    targets: dict[str, Stats]
    static: dict[str, Stats]

    @classmethod
    def fit(cls, predictors: xr.DataArray, targets: xr.DataArray, static: xr.DataArray | None = None) -> Normaliser:
        """Fit on training data.

        ``predictors``/``targets`` are DataArrays with dims (time, channel, y, x)
        whose ``channel`` coordinate names the variables; ``static`` has dims
        (channel, y, x).  NaN cells (masked sea) are skipped.
        """
        import dask

        pending: dict[tuple[str, str], xr.DataArray] = {}
        groups = {"predictors": predictors, "targets": targets, "static": static}
        for group, da in groups.items():
            if da is None:
                continue
            dims = [d for d in da.dims if d != "channel"]
            pending[(group, "mean")] = da.mean(dims, skipna=True)
            pending[(group, "std")] = da.std(dims, skipna=True)
        values = dict(zip(pending, dask.compute(*pending.values()), strict=True))
        out: dict[str, dict[str, Stats]] = {"predictors": {}, "targets": {}, "static": {}}
        for group, da in groups.items():
            if da is None:
                continue
            for name in [str(c) for c in da["channel"].values]:
                mean = float(values[(group, "mean")].sel(channel=name))
                std = float(values[(group, "std")].sel(channel=name))
                if not np.isfinite(mean) or not np.isfinite(std):
                    raise DataError(
                        "no valid values in the training period",
                        variable=name,
                        fix="check the training period and the files' NaN mask",
                    )
                if std == 0.0:
                    std = 1.0  # a constant field: only shift it
                out[group][name] = Stats(mean, std, default_transform(name) if group != "static" else "standard")
        return cls(**out)

    # -- applying ---------------------------------------------------------
    @staticmethod
    def _affine(stats: dict[str, Stats], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [n for n in names if n not in stats]
        if missing:
            raise DataError(
                f"no normalisation statistics for {', '.join(missing)}",
                expected=f"one of {', '.join(stats)}",
                fix="use the variables the emulator was trained with",
            )
        shift = np.array([stats[n].shift for n in names], dtype=np.float32)
        scale = np.array([stats[n].scale for n in names], dtype=np.float32)
        return shift, scale

    @staticmethod
    def _bcast(v: np.ndarray, ndim: int, axis: int) -> np.ndarray:
        shape = [1] * ndim
        shape[axis] = -1
        return v.reshape(shape)

    def normalise(self, group: str, arr: np.ndarray, names: list[str], axis: int = -3) -> np.ndarray:
        shift, scale = self._affine(getattr(self, group), names)
        axis = axis % arr.ndim
        return ((arr - self._bcast(shift, arr.ndim, axis)) / self._bcast(scale, arr.ndim, axis)).astype(np.float32)

    @overload
    def denormalise(self, group: str, arr: np.ndarray, names: list[str], axis: int = -3) -> np.ndarray: ...
    @overload
    def denormalise(self, group: str, arr: torch.Tensor, names: list[str], axis: int = -3) -> torch.Tensor: ...
    def denormalise(
        self, group: str, arr: np.ndarray | torch.Tensor, names: list[str], axis: int = -3
    ) -> np.ndarray | torch.Tensor:
        """Inverse of :meth:`normalise`; works on numpy arrays and torch tensors."""
        shift, scale = self._affine(getattr(self, group), names)
        axis = axis % arr.ndim
        s, b = self._bcast(scale, arr.ndim, axis), self._bcast(shift, arr.ndim, axis)
        if not isinstance(arr, np.ndarray):  # torch
            import torch

            return arr * torch.as_tensor(s, device=arr.device) + torch.as_tensor(b, device=arr.device)
        return arr * s + b

    # -- storing ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {g: {k: asdict(v) for k, v in getattr(self, g).items()} for g in ("predictors", "targets", "static")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normaliser:
        return cls(**{g: {k: Stats(**v) for k, v in d.get(g, {}).items()} for g in ("predictors", "targets", "static")})
