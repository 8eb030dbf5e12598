"""Physical plausibility of input fields, checked once where data enter: in canonical units, by
:func:`downscale.data.units.to_canonical` (training files, ``apply`` chunks and the API alike).

:func:`check_plausible` compares a field's smallest and largest values with the plausible range of its
variable (:attr:`~downscale.data.variables.VariableSpec.plausible`).  It is cheap: one nan-aware min/max per
time step, computed in one pass (both reductions of a dask-backed field in one ``dask.compute``); only when a
value is out of range is the one offending time step read again to name its cell.  NaNs are ignored here
(:func:`downscale.data.io.check_finite` and the runtime report them).

The error line names the file, the variable, the value, its date and cell, the range and the likely cause:
``°C labelled K?`` (temperatures of -100..70 labelled K), ``mm/day labelled kg m-2 s-1?`` (precipitation
~86400x too large), negative precipitation, ``g/kg labelled 1?`` (specific humidity 1000x too large),
``hPa labelled Pa?`` (pressure 100x too small), geopotential labelled as geopotential height...

Rounding below zero: a variable that cannot be negative (precipitation, humidity, fractions) may have values
down to ``-1e-6 x`` its upper plausible bound (``-0.001 mm/day`` for precipitation, ``-1e-7 kg/kg`` for specific
humidity): the noise of packing, unit conversion or interpolation.  They are accepted and set to 0 (lazily),
nothing else changes.  Anything more negative is an error.

Sub-daily precipitation rates may be far above a day's: the upper bound of a step shorter than a day is
:data:`SUBDAILY_PR_MAX` (400 mm/h).

The strictness is the process-wide setting ``plausibility`` (:func:`downscale.set_options`): ``raise``
(default), ``warn`` (a :class:`PlausibilityWarning` with the same line; the data go on unchanged) or ``off``.
"""

from __future__ import annotations

import contextlib
import warnings
from os import PathLike

import numpy as np
import xarray as xr

from downscale.data.calendar import format_stamp, time_step_seconds, time_values
from downscale.data.options import get_option
from downscale.data.variables import MM_DAY, VariableSpec, get_spec
from downscale.errors import DataError, UnknownNameError

__all__ = [
    "NEGATIVE_TOLERANCE",
    "SUBDAILY_PR_MAX",
    "PlausibilityWarning",
    "check_plausible",
    "negative_tolerance",
    "plausible_range",
]

#: Values of a non-negative variable down to ``-NEGATIVE_TOLERANCE x`` its upper plausible bound are rounding.
NEGATIVE_TOLERANCE = 1e-6
#: Upper bound of sub-daily precipitation rates: 400 mm/h (the record hourly falls are ~300 mm), in kg m-2 s-1.
SUBDAILY_PR_MAX = 400.0 * 24.0 * MM_DAY


class PlausibilityWarning(UserWarning):
    """An implausible input value, let through because the ``plausibility`` setting is ``warn``."""


def negative_tolerance(spec: VariableSpec) -> float:
    """How far below 0 a value of a non-negative variable may be (rounding noise); 0 for other variables."""
    return NEGATIVE_TOLERANCE * spec.plausible[1] if spec.non_negative else 0.0


def plausible_range(spec: VariableSpec, *, subdaily: bool = False) -> tuple[float, float]:
    """The (lo, hi) range a value of ``spec`` must lie in, in canonical units (sub-daily precipitation: up to
    :data:`SUBDAILY_PR_MAX`)."""
    lo, hi = float(spec.plausible[0]), float(spec.plausible[1])
    if subdaily and spec.kind == "precipitation":
        hi = max(hi, SUBDAILY_PR_MAX)
    return lo, hi


def _step_extremes(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """nan-aware (min, max) of each time step (one value each for a field without time), in one pass."""
    other = [d for d in da.dims if d != "time"]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps (sea cells, gaps): NaN, ignored below
        if other:
            lo, hi = da.min(dim=other, skipna=True), da.max(dim=other, skipna=True)
        else:
            lo = hi = da
        if lo.chunks is not None:
            import dask

            lo_v, hi_v = dask.compute(lo.data, hi.data)
        else:
            lo_v, hi_v = lo.values, hi.values
    return np.atleast_1d(np.asarray(lo_v, np.float64)), np.atleast_1d(np.asarray(hi_v, np.float64))


def _fmt(value: float, spec: VariableSpec) -> str:
    text = f"{value:.4g} {spec.units}"
    if spec.kind == "precipitation":
        text += f" ({value / MM_DAY:.4g} mm/day)"
    return text


def _likely_cause(spec: VariableSpec, vmin: float, vmax: float, lo: float, hi: float, src: str) -> tuple[str, str]:
    """(the likely cause, its fix) of values from ``vmin`` to ``vmax`` outside ``[lo, hi]`` labelled ``src``."""
    label = f"'{src}'"
    units_fix = "set the variable's units attribute to the units the values are in"
    kind = spec.kind
    if kind == "temperature":
        if vmin >= -100.0 and vmax <= 70.0:
            return f"°C labelled {label}?", f"{units_fix} (units: 'degC')"
        if vmin - 273.15 >= lo and vmax - 273.15 <= hi:
            return f"K labelled {label}?", f"{units_fix} (units: 'K')"
    elif kind == "precipitation":
        if vmin < -negative_tolerance(spec):
            return (
                "negative precipitation (a flux positive upwards, differenced accumulations or a bad packing?)",
                "check the source; if the negative values are noise, set them to 0 first "
                "(e.g. ds['pr'] = ds.pr.clip(min=0))",
            )
        if vmax > hi and vmax / 86400.0 <= hi:
            return (
                f"precipitation ~86400x too large: mm/day labelled {label}?",
                f"{units_fix} (units: 'mm day-1')",
            )
        if vmax > hi and vmax / 1000.0 <= hi:
            return f"precipitation ~1000x too large: mm labelled {label} (m)?", units_fix
    elif kind == "humidity":
        if vmin < -negative_tolerance(spec):
            return (
                "negative specific humidity",
                "check the source; if the negative values are noise, set them to 0 first (e.g. ds.clip(min=0))",
            )
        if vmax > hi and vmax <= 40.0:
            return f"specific humidity in g/kg labelled {label}?", f"{units_fix} (units: 'g kg-1')"
        if vmax > hi and vmax <= 110.0:
            return (
                "relative humidity in % instead of specific humidity?",
                "give specific humidity (hus, huss in kg kg-1), not relative humidity (hur, hurs)",
            )
    elif kind == "pressure":
        if vmax < lo and vmin * 100.0 >= lo and vmax * 100.0 <= hi:
            return f"pressure in hPa labelled {label}?", f"{units_fix} (units: 'hPa')"
        if vmax < lo and vmin * 1000.0 >= lo and vmax * 1000.0 <= hi:
            return f"pressure in kPa labelled {label}?", f"{units_fix} (units: 'kPa')"
        if vmin > hi and vmin / 100.0 >= lo and vmax / 100.0 <= hi:
            return f"pressure in Pa labelled {label}?", f"{units_fix} (units: 'Pa')"
    elif kind == "geopotential" and vmax > hi and vmax / 9.80665 <= hi:
        return (
            f"geopotential (m2 s-2) labelled {label} instead of geopotential height?",
            "divide by g = 9.80665 m s-2 (e.g. ds['zg'] = ds.zg / 9.80665) and set units 'm'",
        )
    return "wrong units or corrupt values?", f"check the source of the data; {units_fix}"


def check_plausible(
    da: xr.DataArray,
    name: str,
    file: str | PathLike | None = None,
    *,
    source_units: str | None = None,
    mode: str | None = None,
) -> xr.DataArray:
    """Check ``da`` (canonical units of variable ``name``) against its plausible range; returns ``da``, with
    rounding noise below 0 of a non-negative variable set to 0.

    ``source_units``: the units attribute of the file (named in the likely cause); ``mode``: ``raise``,
    ``warn`` or ``off`` (default: the ``plausibility`` setting of :func:`downscale.set_options`).  Raises a
    one-line :class:`~downscale.errors.DataError` (``raise``) or warns with a :class:`PlausibilityWarning`.
    """
    mode = get_option("plausibility") if mode is None else mode
    if mode not in ("raise", "warn", "off"):
        raise UnknownNameError("plausibility setting", str(mode), ("raise", "warn", "off"))
    if mode == "off" or da.size == 0 or not np.issubdtype(da.dtype, np.number):
        return da
    spec = get_spec(name)
    mins, maxs = _step_extremes(da)
    if np.all(np.isnan(mins)):
        return da  # nothing but NaN: reported by the NaN checks
    vmin, vmax = float(np.nanmin(mins)), float(np.nanmax(maxs))
    lo, hi = plausible_range(spec)
    tol = negative_tolerance(spec)
    if vmax > hi and spec.kind == "precipitation" and "time" in da.dims and da.sizes["time"] > 1:
        with contextlib.suppress(DataError):
            lo, hi = plausible_range(spec, subdaily=time_step_seconds(da["time"]) < 86400.0 - 1.0)
    if vmin >= lo - tol and vmax <= hi:
        if vmin < lo:  # rounding noise below 0: set to 0
            out = da.where(~(da < lo), lo)
            out.attrs = dict(da.attrs)
            out.encoding = dict(da.encoding)
            return out
        return da
    low = vmin < lo - tol
    steps = mins if low else maxs
    value = vmin if low else vmax
    t = int(np.nanargmin(steps) if low else np.nanargmax(steps))
    where = _where(da, t, low)
    cause, fix = _likely_cause(spec, vmin, vmax, lo, hi, source_units or str(da.attrs.get("units", "")))
    message = (
        f"implausible value {_fmt(value, spec)}{where}, "
        f"{'below' if low else 'above'} the plausible range {lo:.4g} to {hi:.4g} {spec.units}: {cause}"
    )
    error = DataError(
        message,
        file=file,
        variable=name,
        found=f"values from {vmin:.4g} to {vmax:.4g} {spec.units} after conversion to canonical units",
        fix=f"{fix}; or downscale.set_options(plausibility='warn') / recipe data.plausibility: warn to go on",
    )
    if mode == "warn":
        warnings.warn(str(error), PlausibilityWarning, stacklevel=3)
        return da
    raise error


def _where(da: xr.DataArray, t: int, low: bool) -> str:
    """`` on <stamp> at cell (i, j) of (lat, lon)`` of the extreme of time step ``t`` (one step is read)."""
    text = ""
    field = da
    if "time" in da.dims:
        text += f" on {format_stamp(time_values(da['time'])[t])}"
        field = da.isel(time=t)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        values = np.asarray(field.values, np.float64)
        if values.ndim:
            flat = np.nanargmin(values) if low else np.nanargmax(values)
            cell = tuple(int(i) for i in np.unravel_index(flat, values.shape))
            text += f" at cell {cell} of ({', '.join(map(str, field.dims))})"
    return text
