"""What every regridding backend provides, the backend registry, and the shared DataArray plumbing.

A backend is a class registered in :data:`BACKENDS` with

* ``supports(source, target, method) -> bool`` and ``available() -> bool`` (classmethods);
* ``__init__(source, target, method)`` that computes the weights once;
* ``__call__(da) -> DataArray`` regridding any DataArray whose last two dims are ``source.dims``.

(:class:`RegridBackend` is that class, :class:`Regridder` an instance of it.)

:func:`apply_horizontal` does the xarray part for backends that can regrid a numpy block ``(..., ny, nx)``:
dimension checks, staying lazy on dask input, target coordinates and attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import xarray as xr

from downscale.data.grids import Grid
from downscale.errors import GridMismatchError
from downscale.registry import Registry

__all__ = ["BACKENDS", "METHODS", "XESMF_FIX", "RegridBackend", "Regridder", "apply_horizontal"]

#: methods the pip-only native backend knows; backends may add more (xesmf: ``patch``)
METHODS: tuple[str, ...] = ("bilinear", "conservative", "area_mean", "nearest")

#: how to get the optional xesmf backend
XESMF_FIX = "install xesmf (conda install -c conda-forge esmpy xesmf; then pip install 'downscale[xesmf]')"

_SRC_DIMS = ("__regrid_src_y__", "__regrid_src_x__")


@runtime_checkable
class Regridder(Protocol):
    """A regridder from ``source`` to ``target``; weights are computed once, ``__call__`` reuses them."""

    source: Grid
    target: Grid
    method: str
    backend: str

    def __call__(self, da: xr.DataArray) -> xr.DataArray: ...


class RegridBackend(Protocol):
    """A backend class: ``supports``/``available`` are its classmethods, calling it makes a :class:`Regridder`."""

    @property
    def methods(self) -> tuple[str, ...]: ...

    def available(self) -> bool: ...

    def supports(self, source: Grid, target: Grid, method: str) -> bool: ...

    def __call__(self, source: Grid, target: Grid, method: str) -> Regridder: ...


BACKENDS: Registry[RegridBackend] = Registry("regrid backend")


def apply_horizontal(
    da: xr.DataArray,
    source: Grid,
    target: Grid,
    func: Callable[[np.ndarray], np.ndarray],
    *,
    method: str,
) -> xr.DataArray:
    """Apply ``func`` (``(..., ny, nx)`` ndarray -> ``(..., nty, ntx)`` ndarray) over the grid dims of ``da``.

    Leading dims (time, member, ...) are kept; dask input stays lazy (grid dims merged to one chunk first).
    The result carries the target grid's coordinates, ``da``'s attributes with ``grid_mapping`` set for a
    rotated target (dropped otherwise) and ``regrid_method``.  float32 stays float32, anything else is float64.
    """
    ydim, xdim = source.dims
    if ydim not in da.dims or xdim not in da.dims:
        raise GridMismatchError(
            "data is not on the regridder's source grid",
            variable=str(da.name),
            found=f"dims {da.dims}",
            expected=f"dims (..., {ydim}, {xdim})",
            fix="create the regridder from this data's grid (Grid.from_dataset)",
        )
    da = da.transpose(..., ydim, xdim)
    if (da.sizes[ydim], da.sizes[xdim]) != source.shape:
        raise GridMismatchError(
            "data does not have the source grid's shape",
            variable=str(da.name),
            found=(da.sizes[ydim], da.sizes[xdim]),
            expected=source.shape,
            fix="create the regridder from this data's grid (Grid.from_dataset)",
        )
    drop = [str(c) for c, v in da.coords.items() if {ydim, xdim} & set(v.dims) or c == source.mapping_name]
    da = da.drop_vars(drop).rename({ydim: _SRC_DIMS[0], xdim: _SRC_DIMS[1]})
    if da.chunks is not None:
        da = da.chunk({_SRC_DIMS[0]: -1, _SRC_DIMS[1]: -1})
    dtype = np.float32 if da.dtype == np.float32 else np.float64

    def block(x: np.ndarray) -> np.ndarray:
        return np.asarray(func(np.asarray(x)), dtype=dtype)

    clash = [d for d in target.dims if d in da.dims]
    if clash:
        raise GridMismatchError(
            "a leading dimension has the name of a target grid dimension",
            variable=str(da.name),
            found=clash,
            fix="rename that dimension first",
        )
    out = xr.apply_ufunc(
        block,
        da,
        input_core_dims=[list(_SRC_DIMS)],
        output_core_dims=[list(target.dims)],
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={"output_sizes": dict(zip(target.dims, target.shape, strict=False))},
        keep_attrs=True,
    )
    out = out.assign_coords(target.coords_dataset().coords)
    attrs = dict(da.attrs)
    attrs.pop("grid_mapping", None)
    if target.mapping_name:
        attrs["grid_mapping"] = target.mapping_name
    attrs["regrid_method"] = method
    out.attrs = attrs
    out.name = da.name
    return out
