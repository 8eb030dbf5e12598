"""The ``xarray_regrid`` backend: the xarray-regrid package, between rectilinear grids.

A core dependency, so always available.  It offers ``bilinear`` (xarray-regrid's
``linear``) and ``conservative`` between rectilinear lat/lon grids.  ``auto``
prefers the native backend (weights computed once, used for every chunk); ask
for this one with ``backend="xarray_regrid"``, e.g. to cross-check results.
Target points outside the source centres are NaN here (the native backend
clamps them to the edge instead).
"""

from __future__ import annotations

from typing import ClassVar

import xarray as xr

from downscale.data.grids import Grid
from downscale.data.regrid.base import BACKENDS
from downscale.errors import RegridError

__all__ = ["XarrayRegridRegridder"]

_METHODS = ("bilinear", "conservative")


@BACKENDS.register("xarray_regrid")
class XarrayRegridRegridder:
    backend = "xarray_regrid"
    methods: ClassVar[tuple[str, ...]] = _METHODS

    @classmethod
    def available(cls) -> bool:
        try:
            import xarray_regrid  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def supports(cls, source: Grid, target: Grid, method: str) -> bool:
        return method in _METHODS and source.kind == target.kind == "rectilinear"

    def __init__(self, source: Grid, target: Grid, method: str) -> None:
        if not self.supports(source, target, method):
            raise RegridError(
                f"the xarray_regrid backend cannot do '{method}' from a {source.kind} grid onto a {target.kind} grid",
                expected="bilinear or conservative between rectilinear grids",
                fix="use backend='auto'",
            )
        import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

        self.source, self.target, self.method = source, target, method
        self._target = xr.Dataset(coords={"lat": ("lat", target.lat), "lon": ("lon", target.lon)})

    def __repr__(self) -> str:
        return f"XarrayRegridRegridder({self.method}: {self.source.describe()} -> {self.target.describe()})"

    def __call__(self, da: xr.DataArray) -> xr.DataArray:
        ydim, xdim = self.source.dims
        work = da.drop_vars([c for c in da.coords if c not in da.dims])
        work = work.rename({ydim: "lat", xdim: "lon"}).assign_coords(lat=self.source.lat, lon=self.source.lon)
        if self.method == "conservative":
            out = work.regrid.conservative(self._target, latitude_coord="lat", time_dim=None, skipna=True)
        else:
            out = work.regrid.linear(self._target, time_dim=None)
        out = out.transpose(..., "lat", "lon").rename({"lat": self.target.dims[0], "lon": self.target.dims[1]})
        out = out.drop_vars(list(self.target.dims)).assign_coords(self.target.coords_dataset().coords)
        out.attrs = {**da.attrs, "regrid_method": self.method}
        out.attrs.pop("grid_mapping", None)
        return out.astype(da.dtype)
