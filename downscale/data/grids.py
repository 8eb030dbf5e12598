"""Horizontal grids: what a field's cells are, where they are and how big.

A :class:`Grid` is read from any CF dataset (``Grid.from_dataset``) and knows three kinds:

* ``rectilinear``  -- 1-D ``lat``/``lon`` dimension coordinates (GCMs, reanalyses, E-OBS);
* ``rotated_pole`` -- 1-D ``rlat``/``rlon`` plus a ``rotated_latitude_longitude`` grid mapping (CORDEX RCMs);
* ``curvilinear``  -- 2-D ``lat``/``lon`` on any two dims, without a usable grid mapping.

A grid's ``id`` is a 16-hex-digit hash of its geometry (kind, shape, coordinates to 1e-5 degrees, pole), so two
fields are on the same grid exactly when their ids are equal, whatever the file or the dimension names.

Data on a grid is written back with :meth:`Grid.wrap` (one DataArray) or :meth:`Grid.to_dataset` (a Dataset that
also holds the grid-mapping variable, as CF wants)::

    ds = grid.to_dataset({"tas": grid.wrap(values, "tas", coords={"time": times})})
    ds.to_netcdf("out.nc")
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from downscale.data.rotation import (
    ROTATED,
    TOL,
    fit_error,
    infer_pole,
    latlon_of_xyz,
    mismatched_pole,
    normalise_lon,
    rotate,
    unrotate,
    xyz,
)
from downscale.errors import DataError, GridMismatchError

if TYPE_CHECKING:
    from cf_xarray.accessor import CFDatasetAccessor

__all__ = ["EARTH_RADIUS", "Grid", "normalise_lon", "rotate", "unrotate"]

EARTH_RADIUS = 6_371_000.0  # metres
GridKind = Literal["rectilinear", "curvilinear", "rotated_pole"]
_MAPPING_KEYS = (
    "grid_mapping_name",
    "grid_north_pole_latitude",
    "grid_north_pole_longitude",
    "north_pole_grid_longitude",
)
_FIX = (
    "give a CF file with 1-D lat/lon, 1-D rlat/rlon plus a rotated_pole grid mapping, "
    "or 2-D lat/lon coordinates (standard_name latitude/longitude)"
)


def _unwrap_deg(a: np.ndarray) -> np.ndarray:
    return np.rad2deg(np.unwrap(np.deg2rad(a))) if a.size > 1 else a.copy()


def _edges(c: np.ndarray) -> np.ndarray:
    """n+1 cell edges from n centres: midpoints, half a spacing beyond the end centres."""
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _rect_bounds(
    lat: np.ndarray, lon: np.ndarray, lat_b: ArrayLike | None, lon_b: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """Checked (lat edges clipped to +-90, monotonic lon edges near the centres) for a rectilinear grid."""
    lon_u = _unwrap_deg(lon)
    for name, c in (("latitudes", lat), ("longitudes", lon_u)):
        d = np.diff(c)
        if c.size > 1 and not (np.all(d > 0) or np.all(d < 0)):
            raise DataError(
                f"rectilinear {name} are not strictly monotonic",
                found=np.round(c, 3).tolist(),
                fix="sort the grid, e.g. ds.assign_coords(lon=(ds.lon + 180) % 360 - 180).sortby('lon')"
                if name == "longitudes"
                else "sort the grid, e.g. ds.sortby('lat')",
            )
    lat_e = np.clip(_edges(lat) if lat_b is None else np.asarray(lat_b, float), -90.0, 90.0)
    lon_e = _edges(lon_u) if lon_b is None else _unwrap_deg(np.asarray(lon_b, float))
    lon_e = lon_e + 360.0 * np.round((lon_u[0] - 0.5 * (lon_e[0] + lon_e[1])) / 360.0)
    if lat_e.shape != (lat.size + 1,) or lon_e.shape != (lon.size + 1,):
        raise DataError(
            "rectilinear bounds need n+1 edges",
            found=f"{lat_e.shape} and {lon_e.shape}",
            expected=f"({lat.size + 1},) and ({lon.size + 1},)",
        )
    return _arr(lat_e), _arr(lon_e)


def _q(a: np.ndarray) -> bytes:
    """Coordinates quantised to 1e-5 degrees, as bytes for hashing."""
    return np.rint(np.asarray(a, dtype=np.float64) * 1e5).astype("<i8").tobytes()


@overload
def _arr(a: None) -> None: ...
@overload
def _arr(a: ArrayLike) -> np.ndarray: ...
@overload
def _arr(a: ArrayLike | None) -> np.ndarray | None: ...
def _arr(a: ArrayLike | None) -> np.ndarray | None:
    """A read-only float64 copy of ``a`` (None stays None)."""
    if a is None:
        return None
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Grid:
    """A horizontal grid.  Equality and hashing go by :attr:`id`.

    ``lat``/``lon`` are cell centres in degrees (lon in [-180, 180)), 1-D for rectilinear, 2-D otherwise.
    ``y``/``x`` are the 1-D native axes (lat/lon, or rlat/rlon), None for curvilinear.  ``lat_bounds`` and
    ``lon_bounds`` (n+1 edges, rectilinear only) come from the file or from centre midpoints; ``lon_bounds``
    is monotonic and may leave [-180, 180) by up to one cell.
    """

    kind: GridKind
    dims: tuple[str, str]
    lat: np.ndarray = field(repr=False)
    lon: np.ndarray = field(repr=False)
    y: np.ndarray | None = field(default=None, repr=False)
    x: np.ndarray | None = field(default=None, repr=False)
    mapping: dict[str, Any] | None = None
    mapping_name: str | None = None
    lat_bounds: np.ndarray | None = field(default=None, repr=False)
    lon_bounds: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        def set_(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.kind not in ("rectilinear", "curvilinear", "rotated_pole"):
            raise DataError(f"unknown grid kind '{self.kind}'", expected="rectilinear, curvilinear or rotated_pole")
        set_("dims", tuple(self.dims))
        set_("lat", _arr(self.lat))
        set_("lon", _arr(normalise_lon(self.lon)))
        y, x, mapping, mname, lat_b, lon_b = _arr(self.y), _arr(self.x), None, None, None, None
        if self.kind == "rectilinear":
            if self.lat.ndim != 1 or self.lon.ndim != 1:
                raise DataError("rectilinear grids need 1-D lat and lon", found=f"{self.lat.ndim}-D")
            y, x = self.lat, self.lon
            lat_b, lon_b = _rect_bounds(self.lat, self.lon, self.lat_bounds, self.lon_bounds)
        elif self.kind == "rotated_pole":
            if y is None or x is None or y.ndim != 1 or x.ndim != 1 or not self.mapping:
                raise DataError("rotated_pole grids need 1-D rlat/rlon and a grid mapping")
            mapping = {
                k: (str(v) if k == "grid_mapping_name" else float(v))
                for k, v in self.mapping.items()
                if k in _MAPPING_KEYS
            }
            mname = self.mapping_name or "rotated_pole"
            if self.lat.shape != (y.size, x.size) or self.lon.shape != self.lat.shape:
                yy, xx = np.meshgrid(y, x, indexing="ij")
                la, lo = unrotate(yy, xx, mapping)
                set_("lat", _arr(la))
                set_("lon", _arr(lo))
        else:
            if self.lat.ndim != 2 or self.lat.shape != self.lon.shape:
                raise DataError(
                    "curvilinear grids need 2-D lat and lon of the same shape",
                    found=f"{self.lat.shape} and {self.lon.shape}",
                )
            y = x = None
        for name, value in (
            ("y", y),
            ("x", x),
            ("mapping", mapping),
            ("mapping_name", mname),
            ("lat_bounds", lat_b),
            ("lon_bounds", lon_b),
        ):
            set_(name, value)

    # ---------------------------------------------------------------- construction
    @classmethod
    def rectilinear(
        cls,
        lat: ArrayLike,
        lon: ArrayLike,
        *,
        lat_bounds: ArrayLike | None = None,
        lon_bounds: ArrayLike | None = None,
        dims: tuple[str, str] = ("lat", "lon"),
    ) -> Grid:
        """A rectilinear grid from 1-D centres (and optional n+1 edges)."""
        return cls("rectilinear", dims, _arr(lat), _arr(lon), lat_bounds=_arr(lat_bounds), lon_bounds=_arr(lon_bounds))

    @classmethod
    def rotated(
        cls,
        rlat: ArrayLike,
        rlon: ArrayLike,
        pole_lat: float,
        pole_lon: float,
        *,
        north_pole_grid_longitude: float = 0.0,
        dims: tuple[str, str] = ("rlat", "rlon"),
        mapping_name: str = "rotated_pole",
    ) -> Grid:
        """A rotated-pole grid from its 1-D rotated axes and pole; lat/lon are computed."""
        mapping = {
            "grid_mapping_name": ROTATED,
            "grid_north_pole_latitude": pole_lat,
            "grid_north_pole_longitude": pole_lon,
            "north_pole_grid_longitude": north_pole_grid_longitude,
        }
        return cls("rotated_pole", dims, np.empty(0), np.empty(0), _arr(rlat), _arr(rlon), mapping, mapping_name)

    @classmethod
    def from_dataset(cls, obj: xr.Dataset | xr.DataArray, file: str | PathLike | None = None) -> Grid:
        """Read the horizontal grid of a CF Dataset or DataArray; ``file`` is only used in error messages.

        A DataArray that names a rotated-pole grid mapping it does not carry gets its pole inferred from its
        rlat/rlon and 2-D lat/lon (rounded to 0.01 degrees), so it has the same id as the file it came from.  A
        file whose grid mapping does not reproduce its 2-D lat/lon (to 0.005 degrees) gets the pole that does,
        with a warning, or becomes curvilinear when no pole fits.
        """
        ds = xr.Dataset({"__downscale_data__": obj}) if isinstance(obj, xr.DataArray) else obj
        if isinstance(obj, xr.DataArray) and file is None:
            file = (obj.encoding or {}).get("source")
        file = file or (ds.encoding or {}).get("source")
        try:
            return _read_grid(cls, ds, file)
        except DataError as err:
            if err.file or not file:
                raise
            raise type(err)(
                err.message, file=file, variable=err.variable, found=err.found, expected=err.expected, fix=err.fix
            ) from None

    # ---------------------------------------------------------------- identity
    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        if self.kind == "curvilinear":
            return tuple(self.lat.shape)
        y, x = self._axes()
        return (y.size, x.size)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @cached_property
    def id(self) -> str:
        """Stable 16-hex-digit geometry hash (kind, shape, coordinates to 1e-5 degrees, pole)."""
        h = hashlib.sha256(f"{self.kind}|{self.shape}".encode())
        if self.kind == "rotated_pole":
            m = self.mapping or {}
            pole = [
                m["grid_north_pole_latitude"],
                m["grid_north_pole_longitude"],
                m.get("north_pole_grid_longitude", 0.0),
            ]
            y, x = self._axes()
            parts = [_q(y), _q(normalise_lon(x)), _q(np.r_[pole[0], normalise_lon(pole[1:])])]
        else:
            parts = [_q(self.lat), _q(self.lon)]
        for p in parts:
            h.update(p)
        return h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def describe(self) -> str:
        """One readable line: kind, shape, pole or resolution, extent and id."""
        ny, nx = self.shape
        if self.kind == "rotated_pole":
            m = self.mapping or {}
            plat, plon = m["grid_north_pole_latitude"], float(normalise_lon(m["grid_north_pole_longitude"]))
            extra = f" (pole {abs(plat):g}{'N' if plat >= 0 else 'S'} {abs(plon):.1f}{'E' if plon >= 0 else 'W'})"
        elif self.kind == "rectilinear":
            lat_b, lon_b = self._rect_edges()
            dy = np.abs(np.diff(lat_b)).mean()
            dx = np.abs(np.diff(lon_b)).mean()
            extra = f" ({dy:.2f}x{dx:.2f} deg)"
        else:
            extra = f" on ({self.dims[0]}, {self.dims[1]})"
        return (
            f"{self.kind} {ny}x{nx}{extra}, lat {np.nanmin(self.lat):.1f}..{np.nanmax(self.lat):.1f}, "
            f"lon {np.nanmin(self.lon):.1f}..{np.nanmax(self.lon):.1f}, id {self.id}"
        )

    def __repr__(self) -> str:
        return f"Grid({self.describe()})"

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (lists of floats); :meth:`from_dict` gives back an equal grid."""

        def lst(a: np.ndarray | None) -> list[float] | None:
            return None if a is None else np.asarray(a, dtype=np.float64).tolist()

        curv = self.kind == "curvilinear"
        return {
            "kind": self.kind,
            "dims": list(self.dims),
            "id": self.id,
            "lat": lst(self.lat) if self.kind != "rotated_pole" else None,
            "lon": lst(self.lon) if self.kind != "rotated_pole" else None,
            "y": None if curv or self.kind == "rectilinear" else lst(self.y),
            "x": None if curv or self.kind == "rectilinear" else lst(self.x),
            "mapping": self.mapping,
            "mapping_name": self.mapping_name,
            "lat_bounds": lst(self.lat_bounds),
            "lon_bounds": lst(self.lon_bounds),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict`; raises GridMismatchError when a stored ``id`` does not match."""
        empty = np.empty(0)
        lat = empty if d.get("lat") is None else d["lat"]
        lon = empty if d.get("lon") is None else d["lon"]
        g = cls(
            d["kind"],
            tuple(d["dims"]),
            lat,
            lon,
            d.get("y"),
            d.get("x"),
            d.get("mapping"),
            d.get("mapping_name"),
            d.get("lat_bounds"),
            d.get("lon_bounds"),
        )
        if d.get("id") and d["id"] != g.id:
            raise GridMismatchError(
                "grid description does not match its id",
                found=g.id,
                expected=d["id"],
                fix="do not edit grid descriptions by hand",
            )
        return g

    # ---------------------------------------------------------------- geometry
    def _axes(self) -> tuple[np.ndarray, np.ndarray]:
        """The 1-D native axes (y, x) of a rectilinear or rotated-pole grid."""
        assert self.y is not None and self.x is not None, "curvilinear grids have no native axes"
        return self.y, self.x

    def _rect_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lat edges, lon edges) of a rectilinear grid, always set by ``__post_init__``."""
        assert self.lat_bounds is not None and self.lon_bounds is not None, "only rectilinear grids have bounds"
        return self.lat_bounds, self.lon_bounds

    def _pole(self) -> dict[str, Any]:
        """The grid mapping of a rotated-pole grid, always set by ``__post_init__``."""
        assert self.mapping is not None, "only rotated-pole grids have a pole"
        return self.mapping

    @property
    def lat2d(self) -> np.ndarray:
        """(ny, nx) latitudes of cell centres."""
        return np.broadcast_to(self.lat[:, None], self.shape) if self.lat.ndim == 1 else self.lat

    @property
    def lon2d(self) -> np.ndarray:
        """(ny, nx) longitudes of cell centres in [-180, 180)."""
        return np.broadcast_to(self.lon[None, :], self.shape) if self.lon.ndim == 1 else self.lon

    def axis_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(y edges, x edges) in native coordinates (n+1 each); None for curvilinear grids."""
        if self.kind == "rectilinear":
            return self._rect_edges()
        if self.kind == "rotated_pole":
            y, x = self._axes()
            return np.clip(_edges(y), -90.0, 90.0), _edges(_unwrap_deg(x))
        return None

    def native_coords(self, lat: ArrayLike, lon: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Geographic points in this grid's native axis coordinates (rotated for rotated_pole)."""
        if self.kind == "rotated_pole":
            return rotate(lat, lon, self._pole())
        if self.kind == "rectilinear":
            return np.asarray(lat, float), normalise_lon(lon)
        raise DataError("curvilinear grids have no native axis coordinates", found=self.describe())

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        """(ny+1, nx+1) geographic lat/lon of cell corners (approximate for curvilinear grids)."""
        b = self.axis_bounds()
        if b is not None:
            yc, xc = np.meshgrid(b[0], b[1], indexing="ij")
            return unrotate(yc, xc, self._pole()) if self.kind == "rotated_pole" else (yc, normalise_lon(xc))
        p = xyz(self.lat, self.lon)
        p = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]], axis=0)
        p = np.concatenate([2 * p[:, :1] - p[:, 1:2], p, 2 * p[:, -1:] - p[:, -2:-1]], axis=1)
        c = 0.25 * (p[1:, 1:] + p[:-1, 1:] + p[1:, :-1] + p[:-1, :-1])
        return latlon_of_xyz(c / np.linalg.norm(c, axis=-1, keepdims=True))

    def cell_area(self) -> np.ndarray:
        """(ny, nx) cell areas in m2 on a sphere of radius 6371 km.

        Exact from edges for rectilinear and rotated-pole grids (rotation preserves area); for curvilinear grids
        the area of the parallelogram spanned by centred differences of neighbouring centres.
        """
        b = self.axis_bounds()
        if b is not None:
            dsin = np.abs(np.diff(np.sin(np.deg2rad(b[0]))))
            dlon = np.abs(np.diff(np.deg2rad(b[1])))
            return EARTH_RADIUS**2 * dsin[:, None] * dlon[None, :]
        p = xyz(self.lat, self.lon)
        ty = np.gradient(p, axis=0) if p.shape[0] > 1 else np.zeros_like(p)
        tx = np.gradient(p, axis=1) if p.shape[1] > 1 else np.zeros_like(p)
        return EARTH_RADIUS**2 * np.linalg.norm(np.cross(ty, tx), axis=-1)

    def covers(self, other: Grid, halo: float = 0.0) -> bool:
        """Whether this grid's cells (expanded by ``halo`` degrees) contain every cell centre of ``other``.

        Exact for rectilinear and rotated-pole grids (tested in native coordinates); for curvilinear grids a
        centre counts as covered when it lies within half a cell diagonal (+ halo) of one of this grid's centres.
        """
        olat, olon = other.lat2d.ravel(), other.lon2d.ravel()
        b = self.axis_bounds()
        if b is None:
            from scipy.spatial import cKDTree

            dist, idx = cKDTree(xyz(self.lat, self.lon).reshape(-1, 3)).query(xyz(olat, olon))
            reach = 0.75 * np.sqrt(self.cell_area().ravel()[idx]) / EARTH_RADIUS + np.deg2rad(halo)
            return bool(np.all(dist <= reach))
        oy, ox = self.native_coords(olat, olon)
        ok = (oy >= b[0].min() - halo) & (oy <= b[0].max() + halo)
        lo, width = b[1].min() - halo, b[1].max() - b[1].min() + 2 * halo
        if width < 360.0:
            ok &= (ox - lo) % 360.0 <= width
        return bool(np.all(ok))

    # ---------------------------------------------------------------- writing data
    @property
    def _latlon_names(self) -> tuple[str, str]:
        return ("latitude", "longitude") if {"lat", "lon"} & set(self.dims) else ("lat", "lon")

    def _coords(self) -> dict[str, xr.Variable]:
        yd, xd = self.dims
        if self.kind == "rectilinear":
            return {
                yd: xr.Variable(
                    yd,
                    self.lat,
                    {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
                ),
                xd: xr.Variable(
                    xd,
                    self.lon,
                    {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
                ),
            }
        out: dict[str, xr.Variable] = {}
        if self.kind == "rotated_pole":
            out[yd] = xr.Variable(
                yd,
                self.y,
                {
                    "standard_name": "grid_latitude",
                    "units": "degrees",
                    "axis": "Y",
                    "long_name": "latitude in rotated pole grid",
                },
            )
            out[xd] = xr.Variable(
                xd,
                self.x,
                {
                    "standard_name": "grid_longitude",
                    "units": "degrees",
                    "axis": "X",
                    "long_name": "longitude in rotated pole grid",
                },
            )
        la, lo = self._latlon_names
        out[la] = xr.Variable(
            self.dims, self.lat, {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}
        )
        out[lo] = xr.Variable(
            self.dims, self.lon, {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"}
        )
        return out

    def mapping_variable(self) -> xr.DataArray | None:
        """The CF grid-mapping variable (int scalar with the mapping attributes), or None."""
        return None if self.mapping is None else xr.DataArray(np.int32(0), attrs=dict(self.mapping))

    def coords_dataset(self) -> xr.Dataset:
        """A Dataset of the grid's CF coordinates (plus the grid-mapping data variable for rotated grids)."""
        ds = xr.Dataset(coords=self._coords())
        if self.mapping is not None:
            ds[self.mapping_name] = self.mapping_variable()
        return ds

    def wrap(
        self,
        values: ArrayLike,
        name: str,
        leading: tuple[str, ...] = ("time",),
        coords: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> xr.DataArray:
        """A DataArray (leading..., ydim, xdim) on this grid; 2-D values need no leading dims.

        Rotated grids set ``attrs['grid_mapping']``; put the result through :meth:`to_dataset` to get the
        grid-mapping variable written alongside it.
        """
        ndim = np.ndim(values)
        leading = tuple(leading) if ndim == len(leading) + 2 else () if ndim == 2 else tuple(leading)
        if ndim != len(leading) + 2 or tuple(np.shape(values)[-2:]) != self.shape:
            raise GridMismatchError(
                "values do not fit the grid",
                variable=name,
                found=np.shape(values),
                expected=f"{leading} + {self.shape}",
            )
        attrs = dict(attrs or {})
        if self.mapping_name:
            attrs["grid_mapping"] = self.mapping_name
        return xr.DataArray(
            values, dims=leading + self.dims, coords={**self._coords(), **(coords or {})}, name=name, attrs=attrs
        )

    def to_dataset(self, data_vars: dict[str, xr.DataArray]) -> xr.Dataset:
        """A CF Dataset with ``data_vars`` on this grid, its coordinates and (rotated) its grid-mapping variable."""
        ds = xr.Dataset(dict(data_vars))
        for name, da in ds.data_vars.items():
            if set(self.dims) <= set(da.dims):
                got = (da.sizes[self.dims[0]], da.sizes[self.dims[1]])
                if got != self.shape:
                    raise GridMismatchError(
                        "data variable does not fit the grid", variable=str(name), found=got, expected=self.shape
                    )
                if self.mapping_name:
                    da.attrs["grid_mapping"] = self.mapping_name
        ds = ds.assign_coords(self._coords())
        if self.mapping is not None:
            ds[self.mapping_name] = self.mapping_variable()
        return ds


# -------------------------------------------------------------------- dataset inspection helpers
def _read_grid(cls: type[Grid], ds: xr.Dataset, file: str | PathLike | None) -> Grid:
    """The body of :meth:`Grid.from_dataset`."""
    mname, mapping, referenced = _find_mapping(ds)
    ylat, xlon = _find_latlon(ds)
    if mapping is not None or referenced is not None:
        ry, rx = _find_std(ds, "grid_latitude", ("rlat",)), _find_std(ds, "grid_longitude", ("rlon",))
        if (
            mapping is None
            and ry is not None
            and rx is not None
            and ylat is not None
            and xlon is not None
            and ylat.ndim == 2
        ):
            lat2, lon2 = _oriented(ylat, xlon, (ry.dims[0], rx.dims[0]))
            mapping, mname = infer_pole(ry.values, rx.values, lat2, lon2), referenced
        if mapping is not None and ry is not None and rx is not None:
            dims = (str(ry.dims[0]), str(rx.dims[0]))
            y, x = np.asarray(ry.values, float), np.asarray(rx.values, float)
            lat = lon = np.empty(0)
            if ylat is not None and xlon is not None and ylat.ndim == 2 and set(ylat.dims) == set(dims):
                lat, lon = _oriented(ylat, xlon, dims)
                if fit_error(y, x, lat, lon, mapping) > TOL:
                    mapping = mismatched_pole(y, x, lat, lon, mapping, mname, file)
                    if mapping is None:
                        return cls("curvilinear", dims, lat, lon)
            return cls("rotated_pole", dims, lat, lon, y, x, mapping, mname)
    if ylat is None or xlon is None:
        raise DataError(
            "no horizontal coordinates found", file=file, found=f"variables {sorted(map(str, ds.variables))}", fix=_FIX
        )
    if ylat.ndim == 1:
        lat_b, lon_b = _file_bounds(ds, ylat), _file_bounds(ds, xlon)
        return cls(
            "rectilinear",
            (str(ylat.dims[0]), str(xlon.dims[0])),
            ylat.values,
            xlon.values,
            lat_bounds=lat_b,
            lon_bounds=lon_b,
        )
    lat, lon = _oriented(ylat, xlon, ylat.dims)
    return cls("curvilinear", (str(ylat.dims[0]), str(ylat.dims[1])), lat, lon)


def _cf(ds: xr.Dataset) -> CFDatasetAccessor:
    """The cf-xarray accessor (importing cf_xarray registers it; done on first use, not at import)."""
    import cf_xarray  # noqa: F401

    return ds.cf


def _find_mapping(ds: xr.Dataset) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(name, attrs) of a rotated-pole grid mapping, plus the name a variable refers to (even if absent)."""
    referenced = None
    for v in ds.variables.values():
        ref = v.attrs.get("grid_mapping") or v.encoding.get("grid_mapping")
        if isinstance(ref, str) and ref.strip():
            referenced = ref.split(":")[0].split()[0]
            break
    names: list[str] = []
    with contextlib.suppress(Exception):
        names = [n for ns in _cf(ds).grid_mapping_names.values() for n in ns]
    names += [str(k) for k, v in ds.variables.items() if "grid_mapping_name" in v.attrs]
    if referenced in names:
        names.insert(0, referenced)
    for n in names:
        attrs = ds[n].attrs
        if attrs.get("grid_mapping_name") == ROTATED and "grid_north_pole_latitude" in attrs:
            return n, dict(attrs), referenced
    return None, None, referenced if referenced not in names else None


def _find_std(ds: xr.Dataset, standard_name: str, names: tuple[str, ...], ndim: int = 1) -> xr.DataArray | None:
    cands: list[Hashable] = []
    try:
        cands += list(_cf(ds).standard_names.get(standard_name, []))
        if standard_name in ("latitude", "longitude"):
            cands += list(_cf(ds).coordinates.get(standard_name, []))
    except Exception:
        pass
    cands += [n for n in names if n in ds.variables]
    for n in cands:
        if ds[n].ndim == ndim:
            return ds[n]
    return None


def _find_latlon(ds: xr.Dataset) -> tuple[xr.DataArray | None, xr.DataArray | None]:
    for ndim in (1, 2):
        lat = _find_std(ds, "latitude", ("lat", "latitude", "nav_lat"), ndim)
        lon = _find_std(ds, "longitude", ("lon", "longitude", "nav_lon"), ndim)
        if lat is None or lon is None:
            continue
        if ndim == 1 and lat.dims[0] != lon.dims[0] and lat.dims[0] in ds.dims and lon.dims[0] in ds.dims:
            return lat, lon
        if ndim == 2 and set(lat.dims) == set(lon.dims):
            return lat, lon
    return None, None


def _oriented(lat: xr.DataArray, lon: xr.DataArray, dims: tuple[Hashable, ...]) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(lat.transpose(*dims).values, float), np.asarray(lon.transpose(*dims).values, float))


def _file_bounds(ds: xr.Dataset, coord: xr.DataArray) -> np.ndarray | None:
    """n+1 contiguous edges from a CF bounds variable, or None."""
    name = coord.attrs.get("bounds") or coord.encoding.get("bounds")
    for n in [name, f"{coord.name}_bnds", f"{coord.name}_bounds"]:
        if n and n in ds.variables and ds[n].ndim == 2 and ds[n].shape[0] == coord.size and ds[n].shape[1] == 2:
            b = np.asarray(ds[n].values, float)
            if coord.size == 1 or np.allclose(b[1:, 0], b[:-1, 1]):
                return np.concatenate([b[:, 0], b[-1:, 1]])
    return None
