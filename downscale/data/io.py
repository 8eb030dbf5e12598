"""Opening CF NetCDF inputs: file patterns, lazy cftime-decoded datasets, variable lookup.

* :func:`expand_inputs` turns files, globs and directories into a sorted list of files;
* :func:`open_dataset` opens one file lazily (dask, cftime time axis);
* :func:`find_variable` finds a variable by name, CMIP level name (``ta850``) or CF standard name;
* :func:`open_variable` gathers one variable from many files, concatenated in time and converted
  to canonical units, with every :class:`~downscale.data.units.Conversion` recorded.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import xarray as xr

from downscale.data.calendar import (
    TimeLike,
    calendar_of,
    check_time_axis,
    format_date,
    format_stamp,
    time_step_seconds,
    time_values,
)
from downscale.data.units import Conversion, to_canonical
from downscale.data.variables import VARIABLES, parse_level_name
from downscale.errors import (
    CalendarError,
    DataError,
    GridMismatchError,
    MissingVariableError,
    UnitsError,
)

__all__ = [
    "TIME_CHUNK",
    "check_daily",
    "check_file_frequency",
    "check_finite",
    "check_frequency",
    "expand_inputs",
    "find_variable",
    "frequency_attribute",
    "infer_frequency",
    "is_subdaily",
    "open_dataset",
    "open_variable",
]

#: Dask chunk length along time used by :func:`open_dataset`.
TIME_CHUNK = 366

_GLOB_CHARS = set("*?[")


def expand_inputs(patterns: str | PathLike | Sequence[str | PathLike]) -> list[Path]:
    """Files named by ``patterns``: each a file, a glob (``**`` allowed) or a directory (its ``*.nc``).

    Returns a sorted, de-duplicated list.  A pattern matching nothing raises :class:`DataError`.
    """
    if isinstance(patterns, (str, PathLike)):
        patterns = [patterns]
    found: dict[Path, Path] = {}
    for pattern in patterns:
        text = str(Path(pattern).expanduser())
        if _GLOB_CHARS & set(text):
            matches = [Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file()]
            if not matches:
                raise DataError(
                    "no file matches the pattern", file=text, fix="check the path and the wildcard in the pattern"
                )
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).glob("*.nc") if p.is_file())
            if not matches:
                raise DataError("directory holds no *.nc files", file=text, fix="point to the folder with the data")
        elif Path(text).is_file():
            matches = [Path(text)]
        else:
            raise DataError("no such file or directory", file=text, fix="check the path (typo? not downloaded?)")
        for match in matches:
            found.setdefault(match.resolve(), match)
    return sorted(found.values(), key=lambda p: str(p))


def open_dataset(path: str | PathLike) -> xr.Dataset:
    """Open one NetCDF file lazily: dask chunks of :data:`TIME_CHUNK` steps, cftime time decoding.

    A missing file or one that is not readable NetCDF raises a one-line :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=path, fix="check the path (typo? not downloaded?)")
    try:
        with warnings.catch_warnings():
            # dask chunks of TIME_CHUNK steps may split on-disk chunks: fine for these small fields
            warnings.filterwarnings("ignore", message="The specified chunks separate", category=UserWarning)
            ds = xr.open_dataset(
                path,
                decode_times=xr.coders.CFDatetimeCoder(use_cftime=True),
                decode_timedelta=False,
                chunks={"time": TIME_CHUNK},
            )
    except Exception as exc:  # netCDF4/h5py/xarray raise OSError, ValueError, RuntimeError...
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise DataError(
            "not a readable NetCDF file",
            file=path,
            found=reason,
            fix="re-download it or remove it from the inputs",
        ) from None
    return ds


def _levels_hpa(coord: xr.DataArray, *, file: str | PathLike | None, variable: str) -> np.ndarray:
    """Pressure levels of ``coord`` in hPa (units checked with pint; missing units guessed by magnitude)."""
    values = np.atleast_1d(np.asarray(coord.values, dtype=np.float64))
    units = str(coord.attrs.get("units", "")).strip()
    if not units:
        return values / 100.0 if np.nanmax(np.abs(values)) > 1100.0 else values
    from cf_xarray.units import units as ureg

    try:
        factor = float(ureg.Quantity(1.0, units).to("hPa").magnitude)
    except Exception:
        raise UnitsError(
            f"pressure coordinate '{coord.name}' has units '{units}' that are not a pressure",
            file=file,
            variable=variable,
            expected="Pa or hPa",
            fix="set the plev units attribute to 'Pa' or 'hPa'",
        ) from None
    return values * factor


def _vertical_coord(da: xr.DataArray) -> str | None:
    """Name of the pressure coordinate of ``da`` (``plev``, ``lev``, ``level`` or standard_name air_pressure)."""
    for name in ("plev", "lev", "level", "pressure", "isobaric"):
        if name in da.coords:
            return name
    for cname, coord in da.coords.items():
        if coord.attrs.get("standard_name") == "air_pressure" and coord.ndim <= 1:
            return str(cname)
    return None


def _select_level(da: xr.DataArray, level: int, *, file: str | PathLike | None, name: str) -> xr.DataArray:
    zname = _vertical_coord(da)
    if zname is None:
        raise MissingVariableError(
            f"'{da.name}' has no pressure coordinate, so level {level} hPa cannot be checked",
            file=file,
            variable=name,
            fix=f"add a scalar coordinate plev = {level * 100} Pa to the file, or name the variable '{name}'",
        )
    coord = da[zname]
    levels = _levels_hpa(coord, file=file, variable=name)
    hits = np.flatnonzero(np.isclose(levels, level, atol=0.5))
    if hits.size == 0:
        raise MissingVariableError(
            f"no level {level} hPa for '{da.name}'",
            file=file,
            variable=name,
            found="levels " + ", ".join(f"{v:g}" for v in levels) + " hPa",
            fix=f"add a file holding {da.name} at {level} hPa or choose one of the available levels",
        )
    if zname in da.dims:
        da = da.isel({zname: int(hits[0])})
    out = da.drop_vars(zname)
    out.attrs = dict(da.attrs)
    out.attrs["plev_hPa"] = level
    return out


def _describe_vars(ds: xr.Dataset) -> str:
    parts = _var_descriptions(ds)
    return ", ".join(parts) if parts else "no data variables"


def _var_descriptions(ds: xr.Dataset) -> list[str]:
    """``["tas", "ta (plev 850, 500 hPa)", ...]`` for the data variables of ``ds``."""
    parts = []
    bounds = {str(v.attrs.get("bounds")) for v in ds.variables.values() if v.attrs.get("bounds")}
    for vname, var in ds.data_vars.items():
        zname = _vertical_coord(var)
        if zname is not None and var[zname].size and str(vname) not in bounds:
            try:
                levels = _levels_hpa(var[zname], file=None, variable=str(vname))
                parts.append(f"{vname} (plev {', '.join(f'{v:g}' for v in levels)} hPa)")
                continue
            except UnitsError:
                pass
        parts.append(str(vname))
    return parts


def _by_standard_name(ds: xr.Dataset, name: str, base: str, level: int | None) -> list[str]:
    """Data variables whose standard_name identifies ``name`` (a standard name, or a canonical variable)."""
    import cf_xarray  # noqa: F401  (registers the .cf accessor)

    by_sn = {k: [v for v in vs if v in ds.data_vars] for k, vs in ds.cf.standard_names.items()}
    if by_sn.get(name):
        return by_sn[name]
    spec = VARIABLES.get(base)
    if spec is None:
        return []
    out: list[str] = []
    for sname in spec.standard_names:
        for vname in by_sn.get(sname, []):
            var = ds[vname]
            has_z = _vertical_coord(var) is not None
            if (level is not None or spec.has_levels) != has_z:
                continue  # surface variables never come from a pressure-level field, and vice versa
            methods = str(var.attrs.get("cell_methods", ""))
            if base.endswith("max") != ("maximum" in methods) or base.endswith("min") != ("minimum" in methods):
                continue
            if vname not in out:
                out.append(vname)
    return out


def find_variable(ds: xr.Dataset, name: str, file: str | PathLike | None = None) -> xr.DataArray:
    """Variable ``name`` of ``ds``: by name, by CMIP level name (``ta850``) or by CF standard name.

    Level names select ``plev`` (dimension or scalar coordinate, Pa or hPa) and drop it, keeping
    ``attrs["plev_hPa"]``.  The result is named ``name`` and has the canonical layout of
    :func:`canonical_layout` (``lat``/``lon`` names, ascending latitude, no singleton ``height``...).
    Raises :class:`MissingVariableError`.
    """
    return canonical_layout(_find_variable(ds, name, file), file=file, variable=name)


_XarrayT = TypeVar("_XarrayT", xr.DataArray, xr.Dataset)
_LAT_UNITS = {"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"}
_LON_UNITS = {"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"}


def _geo_axis(coord: xr.DataArray, name: str) -> str | None:
    """``lat`` or ``lon`` when ``coord`` is a geographic latitude/longitude (CF standard name, units or a
    usual name), else None.  Rotated ``rlat``/``rlon`` (grid_latitude) are not."""
    sname = str(coord.attrs.get("standard_name", "")).strip().lower()
    units = str(coord.attrs.get("units", "")).strip().lower()
    if sname == "latitude" or units in _LAT_UNITS or name.lower() in ("lat", "latitude", "nav_lat", "y_lat"):
        return "lat"
    if sname == "longitude" or units in _LON_UNITS or name.lower() in ("lon", "longitude", "nav_lon", "x_lon"):
        return "lon"
    return None


def canonical_layout(da: _XarrayT, *, file: str | PathLike | None = None, variable: str | None = None) -> _XarrayT:
    """``da`` (a DataArray, or a Dataset such as a grid file) in the layout the rest of ``downscale`` expects, lazily (nothing is read):

    * 1-D latitude/longitude dimension coordinates of any name (``latitude``, ``nav_lat``, ``y`` with
      standard_name latitude or units degrees_north...) are renamed ``lat``/``lon``;
    * a descending 1-D latitude is flipped to ascending, the data with it (the grid then is the ascending one);
    * length-1 dimensions that are neither time nor horizontal (``height``, ``plev``, ``member``...) are
      squeezed to scalar coordinates.
    """
    rename: dict[str, str] = {}
    for cname in list(da.coords):
        coord = da.coords[cname]
        if coord.ndim != 1 or coord.dims[0] != cname:
            continue
        axis = _geo_axis(coord, str(cname))
        free = axis is not None and axis not in da.coords and axis not in da.dims and axis not in rename.values()
        if axis is not None and free and str(cname) != axis:
            rename[str(cname)] = axis
    if rename:
        da = da.rename(rename)
    if "lat" in da.dims and "lat" in da.coords and da.sizes["lat"] > 1 and da["lat"].ndim == 1:
        lat = np.asarray(da["lat"].values, np.float64)
        if np.all(np.diff(lat) < 0):
            da = da.isel(lat=slice(None, None, -1))
    horizontal: set[str] = set()
    for cname in da.coords:
        coord = da.coords[cname]
        sname = str(coord.attrs.get("standard_name", ""))
        if _geo_axis(coord, str(cname)) or sname in (
            "grid_latitude",
            "grid_longitude",
            "projection_x_coordinate",
            "projection_y_coordinate",
        ):
            horizontal.update(str(d) for d in coord.dims)
    horizontal.update(d for d in ("rlat", "rlon", "x", "y") if d in da.dims)
    if len(horizontal) < 2:
        horizontal.update(str(d) for d in [d for d in da.dims if d != "time"][-2:])
    singles = [d for d in da.dims if d != "time" and str(d) not in horizontal and da.sizes[d] == 1]
    if singles:
        attrs = dict(da.attrs)
        da = da.squeeze(dim=singles)
        da.attrs = attrs
    return da


def _find_variable(ds: xr.Dataset, name: str, file: str | PathLike | None = None) -> xr.DataArray:
    """The body of :func:`find_variable`, before :func:`canonical_layout`."""
    base, level = parse_level_name(name)
    if name in ds.data_vars:
        da = ds[name]
        if level is not None and _vertical_coord(da) is not None:
            da = _select_level(da, level, file=file, name=name)
        return da.rename(name)
    if level is not None and base in ds.data_vars:
        return _select_level(ds[base], level, file=file, name=name).rename(name)
    candidates = _by_standard_name(ds, name, base, level)
    if len(candidates) > 1:
        raise MissingVariableError(
            f"several variables could be '{name}'",
            file=file,
            variable=name,
            found=", ".join(candidates),
            fix="keep one of them in the file or name the variable explicitly",
        )
    if candidates:
        da = ds[candidates[0]]
        if level is not None:
            da = _select_level(da, level, file=file, name=name)
        return da.rename(name)
    raise MissingVariableError(
        f"no variable '{name}'",
        file=file,
        found=_describe_vars(ds),
        fix=f"add a file holding {name} to the inputs",
    )


def _time_bounds(ds: xr.Dataset) -> xr.DataArray | None:
    if "time" not in ds.variables:
        return None
    bname = ds["time"].attrs.get("bounds") or ds["time"].encoding.get("bounds")
    for candidate in (bname, "time_bnds", "time_bounds"):
        if candidate and candidate in ds.variables and ds[candidate].ndim == 2:
            return ds[candidate]
    return None


def open_variable(
    patterns: str | PathLike | Sequence[str | PathLike],
    name: str,
    *,
    canonical: bool = True,
    plausibility: bool = False,
) -> tuple[xr.DataArray, list[Conversion]]:
    """Variable ``name`` from all files of ``patterns``, concatenated along time; stays lazy.

    Files lacking the variable are skipped (unless none has it).  Each file's time axis must strictly increase
    (:func:`~downscale.data.calendar.check_time_axis`); the files are sorted in time, and a time stamp in two
    files is kept once if the values are identical, else an error naming both; all files must share one calendar.  With ``canonical`` the data are converted
    to canonical units (see :func:`~downscale.data.units.to_canonical`); with ``plausibility`` too (and
    canonical) each file's values are checked against the variable's plausible range (as ``build_pairs`` does).  ``attrs["source_files"]``
    lists the files used.  Returns ``(data, conversions)``.
    """
    files = expand_inputs(patterns)
    pieces: list[tuple[Path, xr.DataArray]] = []
    conversions: list[Conversion] = []
    misses: list[MissingVariableError] = []
    seen: dict[str, None] = {}
    declared: dict[str, str | None] = {}
    for path in files:
        ds = open_dataset(path)
        try:
            da = find_variable(ds, name, file=path)
        except MissingVariableError as exc:
            misses.append(exc)
            seen.update(dict.fromkeys(_var_descriptions(ds)))
            continue
        if "time" in da.dims:
            declared.setdefault(str(path), frequency_attribute(ds.attrs.get("frequency")))
            check_file_frequency(da["time"], ds.attrs.get("frequency"), file=path)
            check_time_axis(da["time"], file=path, variable=name)
        if canonical:
            da, conv = to_canonical(
                da,
                name,
                file=path,
                time_bounds=_time_bounds(ds),
                frequency=ds.attrs.get("frequency"),
                check=plausibility,
            )
            if conv is not None:
                conversions.append(conv)
        pieces.append((path, da))
    if not pieces:
        if len(misses) == 1:
            raise misses[0]
        pats = [patterns] if isinstance(patterns, (str, PathLike)) else list(patterns)
        raise MissingVariableError(
            f"no variable '{name}' in any of the {len(files)} files searched",
            file=", ".join(str(p) for p in pats),
            found=", ".join(seen) or "no data variables",
            fix=f"add a file holding {name} to the inputs",
        )
    first_path, first = pieces[0]
    for path, da in pieces[1:]:
        if da.attrs.get("units") != first.attrs.get("units"):
            raise UnitsError(
                "units differ between files",
                file=path,
                variable=name,
                found=da.attrs.get("units"),
                expected=f"{first.attrs.get('units')} (as in {first_path.name})",
                fix="give all files the same units, or open them with canonical=True",
            )
    if "time" not in first.dims:
        if len(pieces) > 1:
            raise DataError(
                "a field without time is in several files",
                file=", ".join(str(p) for p, _ in pieces),
                variable=name,
                fix="pass only one file holding it",
            )
        out = first
    else:
        out = _concat_time([(p, d) for p, d in pieces], name)
    out = out.rename(name)
    out.attrs = dict(first.attrs)
    out.attrs["source_files"] = [str(p) for p, _ in pieces]
    if declared.get(str(first_path)) is not None and "time" in out.dims:
        out.attrs["source_frequency"] = declared[str(first_path)]  # for a field of one step (no step to infer)
    return out, conversions


def _concat_time(pieces: list[tuple[Path, xr.DataArray]], name: str) -> xr.DataArray:
    """Concatenate along time (one calendar) and sort; a time stamp in two files is kept once when both files
    hold the same values there (overlapping copies), else an error naming both files."""
    first_path, first = pieces[0]
    cal = calendar_of(first)
    for path, da in pieces[1:]:
        other = calendar_of(da)
        if other != cal:
            raise CalendarError(
                f"calendar {other} differs from {cal} in {first_path.name}",
                file=path,
                variable=name,
                found=other,
                expected=cal,
                fix="keep files of one model/calendar together, or convert them with xarray's convert_calendar",
            )
    if len(pieces) == 1:
        da = first
    else:
        try:
            da = xr.concat([d for _, d in pieces], dim="time", coords="minimal", compat="override", join="exact")
        except ValueError as exc:
            raise GridMismatchError(
                "files are on different grids and cannot be joined in time",
                file=", ".join(str(p) for p, _ in pieces),
                variable=name,
                found=" ".join(str(exc).split())[:120],
                fix="regrid the files to one grid first",
            ) from None
    values = time_values(da["time"])
    origin = np.concatenate([np.full(d.sizes["time"], k) for k, (_, d) in enumerate(pieces)])
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    same = np.flatnonzero(sorted_values[1:] == sorted_values[:-1])
    keep = np.ones(values.size, bool)
    if same.size:  # each file's own axis is checked already: the same stamp in two files, kept once if identical
        one, two = order[same], order[same + 1]
        twice = np.array_equal(
            np.asarray(da.isel(time=one).values), np.asarray(da.isel(time=two).values), equal_nan=True
        )
        if not twice:
            a, b = (pieces[int(origin[k])][0] for k in (one[0], two[0]))
            raise CalendarError(
                f"{same.size} time stamp(s) are in two files with different values: "
                f"{format_stamp(sorted_values[same[0]])} is in both {a.name} and {b.name}",
                file=f"{a}, {b}",
                variable=name,
                fix="give each time step once: remove one of the overlapping files from the inputs, or cut the "
                "overlap out of one of them (e.g. ds.sel(time=slice(...)))",
            )
        keep[same + 1] = False
    if keep.all() and np.array_equal(order, np.arange(values.size)):
        return da
    return da.isel(time=order[keep])


def check_finite(
    da: xr.DataArray,
    name: str,
    file: str | PathLike | None = None,
    mask: xr.DataArray | np.ndarray | None = None,
) -> None:
    """Raise :class:`DataError` when NaN/inf appear where ``mask`` is True (or anywhere without a mask).

    The message names the number of bad values, the first bad date and its cell index.
    """
    # numpy's stubs type a ufunc of a DataArray as an ndarray; xarray's __array_ufunc__ returns a DataArray
    bad = cast(xr.DataArray, ~np.isfinite(da))
    if mask is not None:
        if not isinstance(mask, xr.DataArray):
            mask = np.asarray(mask, dtype=bool)
            mask = xr.DataArray(mask, dims=da.dims[da.ndim - mask.ndim :])
        bad = bad & mask.astype(bool)
    other = [d for d in bad.dims if d != "time"]
    per_step = bad.any(dim=other) if other else bad
    per_step = np.asarray(per_step.values).reshape(-1)
    if not per_step.any():
        return
    if "time" in bad.dims:
        t = int(np.flatnonzero(per_step)[0])
        cells = np.asarray(bad.isel(time=t).transpose(*other).values)
        when = f"on {format_date(da['time'].values[t])}"
        count = int(bad.sum().values)
    else:
        cells = np.asarray(bad.values)
        when = "in the field"
        count = int(cells.sum())
    cell = tuple(int(i) for i in np.argwhere(cells)[0]) if cells.ndim else ()
    where = f"cell {cell} of ({', '.join(map(str, other))})" if other else "a time step"
    raise DataError(
        f"{count} NaN/inf values where data must be valid",
        file=file,
        variable=name,
        found=f"first {when} at {where}",
        fix="mask those cells (e.g. sea points), fill the gaps, or drop the bad time steps",
    )


def infer_frequency(time: TimeLike) -> str:
    """CMIP frequency of a time axis from its most common step: ``day``, ``6hr``, ``mon``, ``yr``...

    Robust to non-contiguous axes (e.g. DJF-only data).  Unusual steps give ``"<n>s"``.
    """
    step = time_step_seconds(time)
    day = 86400.0
    named = {day: "day", day / 2: "12hr", day / 4: "6hr", day / 8: "3hr", day / 24: "1hr", 1800.0: "30min"}
    for seconds, label in named.items():
        if abs(step - seconds) < 1.0:
            return label
    if 28 * day <= step <= 31 * day:
        return "mon"
    if 360 * day <= step <= 366 * day:
        return "yr"
    return f"{step:g}s"


#: CMIP frequencies this package knows how to pair and check, and their words.
FREQUENCY_WORDS = {
    "30min": "half-hourly",
    "1hr": "hourly",
    "3hr": "3-hourly",
    "6hr": "6-hourly",
    "12hr": "12-hourly",
    "day": "daily",
    "mon": "monthly",
    "yr": "yearly",
}
_RESAMPLE = {"30min": "30min", "1hr": "1h", "3hr": "3h", "6hr": "6h", "12hr": "12h", "day": "1D", "mon": "MS"}


def frequency_attribute(value: object) -> str | None:
    """The CMIP ``frequency`` attribute normalised to one of :data:`FREQUENCY_WORDS` (``6hrPt`` -> ``6hr``), or
    None when absent or not a frequency of time steps (``fx``, climatologies such as ``monC`` or ``1hrCM``)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.endswith("Pt"):
        text = text[:-2]
    return text if text in FREQUENCY_WORDS else None


def frequency_seconds(frequency: str) -> float:
    """The length of a step of ``frequency`` in seconds (``1hr`` -> 3600, ``day`` -> 86400, ``"900s"`` -> 900);
    a month or year counts 30 or 365 days (for ordering frequencies, not for arithmetic on dates)."""
    table = {"30min": 1800.0, "1hr": 3600.0, "3hr": 10800.0, "6hr": 21600.0, "12hr": 43200.0, "day": 86400.0}
    if frequency in table:
        return table[frequency]
    if frequency == "yr":
        return 365 * 86400.0
    if frequency.endswith("s"):
        try:
            return float(frequency[:-1])
        except ValueError:
            pass
    return 30 * 86400.0


def steps_per_day(frequency: str) -> int:
    """Steps of ``frequency`` in a day (24 for ``1hr``); 1 for daily and longer steps."""
    return max(1, round(86400.0 / frequency_seconds(frequency)))


def step_word(frequency: str) -> str:
    """What one time step of ``frequency`` is called in messages: ``days``, or ``hourly steps`` etc."""
    if not is_subdaily(frequency):
        return {"mon": "months", "yr": "years"}.get(frequency, "days")
    return f"{FREQUENCY_WORDS.get(frequency, frequency)} steps"


def is_subdaily(frequency: str) -> bool:
    """Whether ``frequency`` (a label of :func:`infer_frequency`) is a step shorter than a day."""
    if frequency in ("day", "mon", "yr"):
        return False
    if frequency in FREQUENCY_WORDS:
        return True
    return frequency.endswith("s") and frequency[:-1].replace(".", "", 1).isdigit() and float(frequency[:-1]) < 86400


def check_file_frequency(time: TimeLike, attribute: object, *, file: str | PathLike | None = None) -> str | None:
    """The frequency of the time axis of one file, checked against its ``frequency`` attribute where present.

    Returns the inferred frequency (the attribute's for a file of one step; None when neither tells).  A
    disagreement is a one-line :class:`DataError` naming the file.
    """
    declared = frequency_attribute(attribute)
    try:
        found = infer_frequency(time)
    except DataError:
        return declared  # a single time step: trust the attribute
    if declared is not None and declared != found:
        raise DataError(
            f"the frequency attribute says '{attribute}' but the time steps are {found} apart",
            file=file,
            found=f"steps of {found}",
            expected=declared,
            fix="correct the file's global 'frequency' attribute, or check its time axis (missing or extra steps?)",
        )
    return found


def check_frequency(
    time: TimeLike, expected: str, *, file: str | PathLike | None = None, frequency: str | None = None
) -> None:
    """Raise DataError unless ``time`` has steps of ``expected`` (gaps allowed: DJF-only data is fine).

    ``frequency``: the file's ``frequency`` attribute, used when the axis has a single step.
    """
    try:
        found = infer_frequency(time)
    except DataError:
        found = frequency_attribute(frequency) or str(frequency or expected)  # a single step: trust the attribute
    if found != expected:
        words = FREQUENCY_WORDS
        want = words.get(expected, expected)
        how = _RESAMPLE.get(expected)
        if is_subdaily(found) and not is_subdaily(expected) and how:
            fix = (
                f"give {want} files (CMIP table '{expected}'), or aggregate the {words.get(found, found)} data to "
                f"{want} means first (e.g. ds.resample(time='{how}').mean())"
            )
        else:
            fix = f"give {want} files (CMIP table '{expected}'), as the emulator was trained on"
        raise DataError(
            f"inputs are {words.get(found, found)} ({found}); the emulator downscales {want} fields",
            file=file,
            found=f"frequency {found}",
            expected=expected,
            fix=fix,
        )


def check_daily(time: TimeLike, *, file: str | PathLike | None = None, frequency: str | None = None) -> None:
    """Raise DataError unless ``time`` is a daily axis (gaps allowed: DJF-only data is fine)."""
    check_frequency(time, "day", file=file, frequency=frequency)
