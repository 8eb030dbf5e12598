"""The pip-only regridding backend: sparse weight matrices from numpy/scipy.

Weights are a ``scipy.sparse`` matrix (target cells x source cells) built once in ``__init__``; every call is one
sparse matmul over the flattened grid, so many time steps cost little.  Methods:

* ``bilinear``     -- from a rectilinear or rotated-pole source (interpolation in its native axes) onto any
  target's cell centres.  Target points outside the source centres are clamped to the nearest edge (the edge
  value is repeated, no extrapolation).  A NaN neighbour with a non-zero weight gives NaN.
* ``conservative`` -- first-order conservative between rectilinear grids (or rotated grids with the same pole):
  overlap areas on the sphere (sin(lat) differences times longitude overlaps, modulo 360).  NaN source cells are
  skipped and the value renormalised by the valid overlap; a target cell without valid overlap is NaN.
* ``area_mean``    -- any fine grid onto a coarse rectilinear (or rotated-pole) grid: the ``cell_area``-weighted
  mean of the fine cells whose centres fall inside each coarse cell (half-open bounds).  NaN skipped; a coarse
  cell without (valid) fine centres is NaN.  This is the RCM -> RCMu upscaling of the perfect-model framework.
* ``nearest``      -- any grid onto any grid: nearest source centre on the unit sphere (scipy cKDTree).
"""

from __future__ import annotations

from typing import ClassVar, TypedDict

import numpy as np
import xarray as xr
from scipy import sparse

from downscale.data.grids import Grid, normalise_lon
from downscale.data.regrid.base import BACKENDS, apply_horizontal
from downscale.errors import RegridError

__all__ = ["NativeRegridder"]

_AXIS_KINDS = ("rectilinear", "rotated_pole")


def _same_native_axes(a: Grid, b: Grid) -> bool:
    """Both grids are rectilinear in the same coordinates (geographic, or the same rotated pole)."""
    if a.kind == b.kind == "rectilinear":
        return True
    if a.kind == b.kind == "rotated_pole":
        return Grid.rotated([0.0], [0.0], **_pole(a)).id == Grid.rotated([0.0], [0.0], **_pole(b)).id
    return False


class _Pole(TypedDict):
    pole_lat: float
    pole_lon: float
    north_pole_grid_longitude: float


def _pole(g: Grid) -> _Pole:
    m = g.mapping or {}
    return {
        "pole_lat": m["grid_north_pole_latitude"],
        "pole_lon": m["grid_north_pole_longitude"],
        "north_pole_grid_longitude": m.get("north_pole_grid_longitude", 0.0),
    }


@BACKENDS.register("native")
class NativeRegridder:
    """Regrid with precomputed sparse weights (numpy/scipy only)."""

    backend = "native"
    methods: ClassVar[tuple[str, ...]] = ("bilinear", "conservative", "area_mean", "nearest")

    @classmethod
    def available(cls) -> bool:
        return True

    @classmethod
    def supports(cls, source: Grid, target: Grid, method: str) -> bool:
        if method == "bilinear":
            return source.kind in _AXIS_KINDS
        if method == "conservative":
            return _same_native_axes(source, target)
        if method == "area_mean":
            return target.kind in _AXIS_KINDS
        return method == "nearest"

    def __init__(self, source: Grid, target: Grid, method: str) -> None:
        if not self.supports(source, target, method):
            raise RegridError(
                f"the native backend cannot do '{method}' from a {source.kind} grid onto a {target.kind} grid",
                fix="use backend='auto' or another method",
            )
        self.source, self.target, self.method = source, target, method
        build = {"bilinear": _bilinear, "conservative": _conservative, "area_mean": _area_mean, "nearest": _nearest}[
            method
        ]
        w = build(source, target).tocsr()
        w.eliminate_zeros()
        self.weights: sparse.csr_matrix = w
        # bilinear/nearest: NaN propagates; conservative/area_mean: NaN skipped and weights renormalised
        self._renormalise = method in ("conservative", "area_mean")

    def __repr__(self) -> str:
        return (
            f"NativeRegridder({self.method}: {self.source.describe()} -> {self.target.describe()}, "
            f"{self.weights.nnz} weights)"
        )

    def __call__(self, da: xr.DataArray) -> xr.DataArray:
        """Regrid ``da`` (..., source ydim, source xdim); lazy for dask input."""
        return apply_horizontal(da, self.source, self.target, self.regrid_array, method=self.method)

    def regrid_array(self, x: np.ndarray) -> np.ndarray:
        """Regrid a numpy array (..., ny, nx) -> (..., nty, ntx) in float64."""
        lead = x.shape[:-2]
        flat = np.asarray(x, dtype=np.float64).reshape(-1, self.source.size).T
        if not self._renormalise:
            out = self.weights @ flat
        else:
            valid = np.isfinite(flat)
            num = self.weights @ np.where(valid, flat, 0.0)
            den = self.weights @ valid.astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        return np.asarray(out).T.reshape(lead + self.target.shape)


# ------------------------------------------------------------------------------------------ bilinear
def _axis_interp(axis: np.ndarray, t: np.ndarray, periodic_lon: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each target coordinate ``t``: (lower index, upper index, fraction) into ``axis`` (file order)."""
    a = np.asarray(axis, dtype=np.float64)
    if periodic_lon:
        a = np.rad2deg(np.unwrap(np.deg2rad(a))) if a.size > 1 else a
    order = np.argsort(a, kind="stable")
    a_s = a[order]
    if periodic_lon:
        step = (a_s[-1] - a_s[0]) / max(a.size - 1, 1)
        if a.size > 1 and abs(a_s[-1] - a_s[0] + step - 360.0) < 0.01 * step:  # global: close the seam
            a_s, order = np.append(a_s, a_s[0] + 360.0), np.append(order, order[0])
            t = a_s[0] + (t - a_s[0]) % 360.0
        else:
            c = 0.5 * (a_s[0] + a_s[-1])
            t = c + normalise_lon(t - c)
    if a_s.size == 1:
        z = np.zeros(t.shape, dtype=np.int64) + order[0]
        return z, z, np.zeros(t.shape)
    t = np.clip(t, a_s[0], a_s[-1])  # clamp to the edge centres
    i = np.clip(np.searchsorted(a_s, t, side="right") - 1, 0, a_s.size - 2)
    f = (t - a_s[i]) / (a_s[i + 1] - a_s[i])
    # a target on a source centre (to rounding) takes that centre alone: no NaN leaks in from a neighbour
    f = np.where(f < 1e-9, 0.0, np.where(f > 1.0 - 1e-9, 1.0, f))
    return order[i], order[i + 1], f


def _bilinear(source: Grid, target: Grid) -> sparse.coo_matrix:
    ty, tx = source.native_coords(target.lat2d.ravel(), target.lon2d.ravel())
    sy, sx = source.y, source.x
    assert sy is not None and sx is not None  # supports(): a rectilinear or rotated-pole source
    y0, y1, fy = _axis_interp(sy, ty, periodic_lon=False)
    x0, x1, fx = _axis_interp(sx, tx, periodic_lon=True)
    nx = source.shape[1]
    rows = np.tile(np.arange(ty.size), 4)
    cols = np.concatenate([y0 * nx + x0, y0 * nx + x1, y1 * nx + x0, y1 * nx + x1])
    w = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    return sparse.coo_matrix((w, (rows, cols)), shape=(target.size, source.size))


# ------------------------------------------------------------------------------------------ conservative
def _lat_overlap(tb: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """(nt, ns) overlaps of latitude bands in sin(lat)."""
    t_lo, t_hi = np.minimum(tb[:-1], tb[1:])[:, None], np.maximum(tb[:-1], tb[1:])[:, None]
    s_lo, s_hi = np.minimum(sb[:-1], sb[1:])[None, :], np.maximum(sb[:-1], sb[1:])[None, :]
    lo, hi = np.deg2rad(np.maximum(t_lo, s_lo)), np.deg2rad(np.minimum(t_hi, s_hi))
    return np.where(hi > lo, np.sin(hi) - np.sin(lo), 0.0)


def _lon_overlap(tb: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """(nt, ns) overlaps of longitude intervals in radians, modulo 360 degrees."""
    t_lo, t_hi = np.minimum(tb[:-1], tb[1:])[:, None], np.maximum(tb[:-1], tb[1:])[:, None]
    s_lo, s_hi = np.minimum(sb[:-1], sb[1:])[None, :], np.maximum(sb[:-1], sb[1:])[None, :]
    shift = np.floor((t_lo - s_lo) / 360.0) * 360.0  # s_lo + shift in (t_lo - 360, t_lo]
    total = np.zeros(np.broadcast_shapes(t_lo.shape, s_lo.shape))
    for k in (0.0, 360.0):
        total += np.clip(np.minimum(t_hi, s_hi + shift + k) - np.maximum(t_lo, s_lo + shift + k), 0.0, None)
    return np.deg2rad(total)


def _conservative(source: Grid, target: Grid) -> sparse.spmatrix:
    sb, tb = source.axis_bounds(), target.axis_bounds()
    assert sb is not None and tb is not None  # supports(): both grids have native axes
    (sy, sx), (ty, tx) = sb, tb
    wy = sparse.csr_matrix(_lat_overlap(ty, sy))
    wx = sparse.csr_matrix(_lon_overlap(tx, sx))
    return sparse.kron(wy, wx, format="csr")


# ------------------------------------------------------------------------------------------ area mean
def _bin(bounds: np.ndarray, v: np.ndarray, lon: bool) -> np.ndarray:
    """Index of the cell (half-open bounds, file order) holding each value; -1 outside."""
    n = bounds.size - 1
    desc = bounds[-1] < bounds[0]
    b = bounds[::-1] if desc else bounds
    if lon:
        v = b[0] + (v - b[0]) % 360.0
    idx = np.searchsorted(b, v, side="right") - 1
    idx = np.where(v == b[-1], n - 1, idx)  # the last edge belongs to the last cell
    idx = np.where((idx >= 0) & (idx < n), idx, -1)
    return np.where(idx >= 0, n - 1 - idx, -1) if desc else idx


def _area_mean(source: Grid, target: Grid) -> sparse.coo_matrix:
    bounds = target.axis_bounds()
    assert bounds is not None  # supports(): a rectilinear or rotated-pole target
    yb, xb = bounds
    fy, fx = target.native_coords(source.lat2d.ravel(), source.lon2d.ravel())
    iy, ix = _bin(yb, fy, lon=False), _bin(xb, fx, lon=True)
    ok = (iy >= 0) & (ix >= 0)
    rows = iy[ok] * target.shape[1] + ix[ok]
    cols = np.flatnonzero(ok)
    w = source.cell_area().ravel()[ok]
    return sparse.coo_matrix((w, (rows, cols)), shape=(target.size, source.size))


# ------------------------------------------------------------------------------------------ nearest
def _nearest(source: Grid, target: Grid) -> sparse.coo_matrix:
    from scipy.spatial import cKDTree

    from downscale.data.rotation import xyz as _xyz

    tree = cKDTree(_xyz(source.lat2d, source.lon2d).reshape(-1, 3))
    _, idx = tree.query(_xyz(target.lat2d, target.lon2d).reshape(-1, 3))
    rows = np.arange(target.size)
    return sparse.coo_matrix((np.ones(target.size), (rows, idx)), shape=(target.size, source.size))
