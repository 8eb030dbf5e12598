"""The region an emulator reads from an input: coverage checks and cutting a (global) rectilinear input down to
the emulator's domain plus a halo before anything is read.

* :func:`check_input_grid` -- the one check of an input's grid against the emulator's coarse grid (on it, or
  rectilinear and covering the domain plus a halo), shared by ``apply`` (before any data is read) and the API;
* :func:`domain_box`, :func:`check_covers`, :func:`read_halo` and :func:`subset_region`.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import xarray as xr

from downscale.data.grids import Grid
from downscale.errors import GridMismatchError

__all__ = ["check_covers", "check_input_grid", "domain_box", "read_halo", "subset_region"]


def check_input_grid(
    grid: Grid, coarse: Grid, halo: float, *, file: str | PathLike | None = None, variable: str | None = None
) -> None:
    """Raise GridMismatchError unless ``grid`` is ``coarse`` itself, or rectilinear and covering the centres of
    ``coarse`` plus ``halo`` degrees (it is then cut and regridded)."""
    if grid.id == coarse.id:
        return
    if grid.kind != "rectilinear":
        raise GridMismatchError(
            "input is not on the emulator's coarse grid and is not rectilinear",
            file=file,
            variable=variable,
            found=grid.describe(),
            expected=coarse.describe(),
            fix="regrid the inputs to a regular lat/lon grid (or to the emulator's coarse grid) first",
        )
    check_covers(grid, coarse, halo, file=file, variable=variable)


def read_halo(source: Grid, halo: float) -> float:
    """The margin in degrees to read around the domain from rectilinear ``source``: ``halo``, but at least one
    cell of ``source`` itself, so that a coarser input keeps the neighbours its regridding needs at the domain
    edge.  (Coverage is still checked against ``halo`` alone; reading more than the file has is harmless.)"""
    cell = max(
        float(np.abs(np.diff(np.asarray(source.lat_bounds))).max()),
        float(np.abs(np.diff(np.asarray(source.lon_bounds))).max()),
    )
    return max(float(halo), cell)


def domain_box(grid: Grid, halo: float) -> tuple[float, float, float, float]:
    """(lat0, lat1, lon0, lon1) around the cell centres of ``grid`` plus ``halo`` degrees; lon1 - lon0 < 360
    and lon0 may be below -180 (the box is not cut at the date line)."""
    lat, lon = grid.lat2d.ravel(), grid.lon2d.ravel()
    ref = float(np.degrees(np.arctan2(np.sin(np.radians(lon)).mean(), np.cos(np.radians(lon)).mean())))
    rel = (lon - ref + 180.0) % 360.0 - 180.0
    lat0, lat1 = max(-90.0, float(lat.min()) - halo), min(90.0, float(lat.max()) + halo)
    lon0, lon1 = ref + float(rel.min()) - halo, ref + float(rel.max()) + halo
    if lon1 - lon0 >= 360.0:
        lon0, lon1 = ref - 180.0, ref + 180.0
    return lat0, lat1, lon0, lon1


def _lon_global(lon_b: np.ndarray) -> bool:
    return float(np.abs(lon_b[-1] - lon_b[0])) >= 360.0 - 1e-6


def check_covers(
    source: Grid, coarse: Grid, halo: float, *, file: str | PathLike | None = None, variable: str | None = None
) -> None:
    """Raise GridMismatchError unless the cells of rectilinear ``source`` cover the centres of ``coarse`` plus
    ``halo`` degrees (the region read for regridding)."""
    lat0, lat1, lon0, lon1 = domain_box(coarse, halo)
    lat_b, lon_b = np.asarray(source.lat_bounds), np.asarray(source.lon_bounds)
    eps = 1e-6
    ok = lat_b.min() <= lat0 + eps and lat_b.max() >= lat1 - eps
    if ok and not _lon_global(lon_b):
        b0, b1 = float(lon_b.min()), float(lon_b.max())
        start = b0 + (lon0 - b0 + eps) % 360.0 - eps
        ok = start + (lon1 - lon0) <= b1 + eps
    if not ok:

        def fmt(a: float, b: float, ns: str) -> str:
            return f"{a:.2f}..{b:.2f}{ns}"

        raise GridMismatchError(
            f"input does not cover the emulator's domain plus a halo of {halo:g} degrees",
            file=file,
            variable=variable,
            found=f"input cells span lat {fmt(lat_b.min(), lat_b.max(), 'N')}, lon {fmt(lon_b.min(), lon_b.max(), 'E')}",
            expected=f"lat {fmt(lat0, lat1, 'N')}, lon {fmt(lon0, lon1, 'E')}",
            fix="give inputs that cover the emulator's domain with a margin (e.g. global files), "
            "or lower the margin with --halo (--halo 0: the domain only; edge values are then clamped)",
        )


def _run_indices(mask: np.ndarray, periodic: bool) -> np.ndarray | slice:
    """Indices of the True cells of ``mask`` as one run (a slice when it does not wrap around)."""
    n = mask.size
    if mask.all():
        return slice(None)
    idx = np.flatnonzero(mask)
    if not periodic or not (mask[0] and mask[-1]):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    first = int(np.flatnonzero(~mask)[-1]) + 1  # the run starts after the last unselected cell
    last = int(np.flatnonzero(~mask)[0]) - 1
    return np.r_[np.arange(first, n), np.arange(0, last + 1)]


def subset_region(da: xr.DataArray, source: Grid, coarse: Grid, halo: float) -> tuple[xr.DataArray, Grid]:
    """``da`` (on rectilinear ``source``) cut to the cells that meet the domain of ``coarse`` plus ``halo``
    degrees, plus one cell on each side for interpolation.  Lazy: on dask input only that region is read
    (a domain across the input's longitude seam reads its latitude band).  Returns (data, its grid)."""
    lat0, lat1, lon0, lon1 = domain_box(coarse, halo)
    lat_b, lon_b = np.asarray(source.lat_bounds), np.asarray(source.lon_bounds)
    lo, hi = np.minimum(lat_b[:-1], lat_b[1:]), np.maximum(lat_b[:-1], lat_b[1:])
    ymask = (hi >= lat0) & (lo <= lat1)
    ymask = _grow(ymask, periodic=False)
    periodic = _lon_global(lon_b)
    w = np.abs(np.diff(lon_b))
    start = np.minimum(lon_b[:-1], lon_b[1:])
    s = lon0 + (start - lon0) % 360.0  # each cell's west edge in [lon0, lon0 + 360)
    xmask = (s <= lon1) | (s - 360.0 + w >= lon0)
    xmask = _grow(xmask, periodic=periodic)
    ydim, xdim = source.dims
    yi, xi = _run_indices(ymask, False), _run_indices(xmask, periodic)
    if yi == slice(None) and isinstance(xi, slice) and xi == slice(None):
        return da, source
    out = da.isel({ydim: yi}).isel({xdim: xi})
    return out, Grid.from_dataset(out)


def _grow(mask: np.ndarray, periodic: bool) -> np.ndarray:
    grown = mask.copy()
    if periodic:
        grown |= np.roll(mask, 1) | np.roll(mask, -1)
    else:
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
    return grown
