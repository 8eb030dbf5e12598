"""Optional regridding backend on xESMF (ESMF weights), used only when ``xesmf`` can be imported.

xesmf needs esmpy, which is only on conda-forge::

    conda install -c conda-forge esmpy xesmf
    pip install 'downscale[xesmf]'

It adds what the native backend cannot do: conservative remapping between any grid kinds (rotated and
curvilinear included), bilinear from curvilinear sources, and ``patch`` interpolation.  xesmf is imported
lazily, never when this module is imported.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import ClassVar

import numpy as np
import xarray as xr

from downscale.data.grids import Grid
from downscale.data.regrid.base import BACKENDS, XESMF_FIX, apply_horizontal
from downscale.errors import RegridError

__all__ = ["XesmfRegridder"]

_XE_METHODS = {"bilinear": "bilinear", "conservative": "conservative", "nearest": "nearest_s2d", "patch": "patch"}


def _import_xesmf() -> ModuleType:
    try:
        import xesmf
    except Exception as exc:
        raise RegridError(
            f"the xesmf regrid backend is not available ({type(exc).__name__}: {exc})", fix=XESMF_FIX
        ) from None
    return xesmf


@cache
def _available() -> bool:
    try:
        _import_xesmf()
    except RegridError:
        return False
    return True


def _xesmf_grid(grid: Grid, bounds: bool) -> xr.Dataset:
    """The grid as xesmf wants it: lat/lon centres (1-D or 2-D) and, for conservative, lat_b/lon_b corners."""
    if grid.kind == "rectilinear":
        lon = np.rad2deg(np.unwrap(np.deg2rad(grid.lon))) if grid.lon.size > 1 else grid.lon
        ds = xr.Dataset(coords={"lat": ("lat", grid.lat), "lon": ("lon", lon)})
        if bounds:
            ds = ds.assign_coords(lat_b=("lat_b", grid.lat_bounds), lon_b=("lon_b", grid.lon_bounds))
        return ds
    ds = xr.Dataset(coords={"lat": (("y", "x"), grid.lat2d), "lon": (("y", "x"), grid.lon2d)})
    if bounds:
        lat_c, lon_c = grid.corners()
        ds = ds.assign_coords(lat_b=(("y_b", "x_b"), lat_c), lon_b=(("y_b", "x_b"), lon_c))
    return ds


def _is_global(grid: Grid) -> bool:
    if grid.kind != "rectilinear":
        return False
    b = grid.lon_bounds
    assert b is not None  # a rectilinear grid always has its edges
    return bool(abs(abs(b[-1] - b[0]) - 360.0) < 1e-6 * 360.0)


@BACKENDS.register("xesmf")
class XesmfRegridder:
    """Regrid with xESMF; the ESMF weights are computed once in ``__init__``."""

    backend = "xesmf"
    methods: ClassVar[tuple[str, ...]] = tuple(_XE_METHODS)

    @classmethod
    def available(cls) -> bool:
        return _available()

    @classmethod
    def supports(cls, source: Grid, target: Grid, method: str) -> bool:
        return method in _XE_METHODS

    def __init__(self, source: Grid, target: Grid, method: str) -> None:
        xesmf = _import_xesmf()
        if method not in _XE_METHODS:
            raise RegridError(
                f"the xesmf backend has no method '{method}'",
                expected=", ".join(_XE_METHODS),
                fix="use backend='native' for area_mean",
            )
        self.source, self.target, self.method = source, target, method
        conservative = method == "conservative"
        self._regridder = xesmf.Regridder(
            _xesmf_grid(source, conservative),
            _xesmf_grid(target, conservative),
            method=_XE_METHODS[method],
            periodic=_is_global(source) and not conservative,
            unmapped_to_nan=True,
        )
        self._skipna = conservative

    def __repr__(self) -> str:
        return f"XesmfRegridder({self.method}: {self.source.describe()} -> {self.target.describe()})"

    def regrid_array(self, x: np.ndarray) -> np.ndarray:
        """Regrid a numpy array (..., ny, nx) -> (..., nty, ntx)."""
        out = self._regridder(np.asarray(x, dtype=np.float64), skipna=self._skipna, na_thres=1.0)
        return np.asarray(out)

    def __call__(self, da: xr.DataArray) -> xr.DataArray:
        """Regrid ``da`` (..., source ydim, source xdim); lazy for dask input."""
        return apply_horizontal(da, self.source, self.target, self.regrid_array, method=self.method)
