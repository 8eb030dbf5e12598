"""Climate indices: pure, unit-aware functions, xarray in and xarray out (in the style of xclim's indices).

Every index takes a DataArray with a ``time`` dimension and two spatial dimensions and returns either

* a **climatological** field ``(y, x)`` (mean, quantile, wet-day frequency, lag-1 autocorrelation, interannual
  variability), or
* one value per **season year** ``(year, y, x)`` (TXx, TXn, SU, Rx1day, SDII, CDD, CWD); :func:`climatology`
  averages those over the years.

**Sub-daily data** (hourly, 3-hourly...).  Each index declares the time step it is defined at
(:attr:`IndexSpec.frequency`): ``any`` indices (mean, quantile, lag-1 autocorrelation, interannual
variability) work at the native step; ``daily`` indices (those that count or pick days: TXx, TXn, SU, Rx1day,
SDII, CDD, CWD, wet-day frequency) aggregate sub-daily input to daily values first (:func:`to_daily`: the
daily mean, so a precipitation flux stays a mean rate); ``subdaily`` indices (``daily_max``,
``diurnal_amplitude``) need several steps a day and mean nothing on daily data.

``season`` selects the days first: ``"DJF"``, ``"MAM"``, ``"JJA"``, ``"SON"``, month initials (``"NDJFM"``),
``"ANN"`` or None (every day given).  Season years follow :func:`downscale.data.calendar.season_year`
(DJF 1983 = December 1982 + January/February 1983); ``"ANN"`` groups by calendar year; with None, days whose
months form one consecutive run (winters only: December to February) are grouped by that season's years, and
anything else by calendar year.

**Units.**  Inputs carry a ``units`` attribute.  Temperature thresholds carry their units (``"25 degC"``, a
bare number is refused); precipitation indices work in mm/day whatever the input units (``kg m-2 s-1``,
``mm day-1``, ...) and their thresholds are mm/day numbers or strings with units (``"1 mm/day"``).
Results say their units in ``attrs["units"]``.

**Missing values.**  NaN days are skipped (they neither extend nor count in a spell); a cell without any valid
day is NaN.  Spells never run across a gap in the dates (the end of one DJF and the start of the next).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from downscale.errors import UnitsError
from downscale.registry import Registry

__all__ = [
    "INDICES",
    "IndexSpec",
    "cdd",
    "climatology",
    "compute_index",
    "cwd",
    "daily_max",
    "diurnal_amplitude",
    "interannual_variability",
    "is_subdaily",
    "lag1_autocorrelation",
    "mean",
    "quantile",
    "rx1day",
    "sdii",
    "select_season",
    "su",
    "time_step",
    "to_daily",
    "txn",
    "txx",
    "wet_day_frequency",
]

#: units every precipitation index works in
PR_UNITS = "mm day-1"
#: seconds in a day: a step shorter than this is sub-daily
DAY_SECONDS = 86400.0
#: the time steps an index may be defined at (:attr:`IndexSpec.frequency`)
FREQUENCIES: tuple[str, ...] = ("any", "daily", "subdaily")


@dataclass(frozen=True)
class IndexSpec:
    """A registered index: its function, which fields it applies to and the units of its result.

    ``applies_to``: ``temperature`` (units convertible to K), ``precipitation`` (a precipitation flux or rate)
    or ``any``.  ``units``: ``input`` (the input's units), ``precipitation`` (mm day-1) or fixed units.
    ``frequency``: ``any`` (computed at the native step), ``daily`` (defined on days: sub-daily input is
    aggregated by :func:`to_daily` first) or ``subdaily`` (needs several steps a day: a diurnal cycle).
    """

    name: str
    func: Callable[..., xr.DataArray]
    applies_to: str = "any"
    units: str = "input"
    description: str = ""
    frequency: str = "any"

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise ValueError(f"index {self.name}: frequency must be one of {FREQUENCIES}, not {self.frequency!r}")

    def result_units(self, input_units: str) -> str:
        return {"input": input_units, "precipitation": PR_UNITS}.get(self.units, self.units)


INDICES: Registry[IndexSpec] = Registry("index")


def _register(name: str, applies_to: str = "any", units: str = "input", frequency: str = "any") -> Callable:
    def deco(func: Callable) -> Callable:
        doc = (func.__doc__ or "").strip().splitlines()
        INDICES.register(name)(IndexSpec(name, func, applies_to, units, doc[0] if doc else "", frequency))
        return func

    return deco


# --------------------------------------------------------------------------- plumbing
def _ureg() -> Any:
    from cf_xarray.units import units

    return units


def _check(da: object, name: str) -> xr.DataArray:
    if not isinstance(da, xr.DataArray) or "time" not in da.dims:
        raise TypeError(f"index {name} needs an xarray DataArray with a 'time' dimension")
    if not str(da.attrs.get("units", "")).strip():
        raise UnitsError(
            "missing units attribute",
            variable=str(da.name or name),
            fix="set the field's units attribute (e.g. 'K' or 'kg m-2 s-1')",
        )
    return da.transpose("time", ...)


def select_season(da: xr.DataArray, season: str | None) -> tuple[xr.DataArray, np.ndarray]:
    """The days of ``season`` (None: all) and the season year of each."""
    from downscale.data.calendar import Period, season_year, select_period

    if season is None:
        return da, season_year(da["time"], _season_of(da["time"]))
    if str(season).upper() == "ANN":
        return da, season_year(da["time"], None)
    da = select_period(da, Period(season=season))
    return da, season_year(da["time"], season)


def _season_of(time: xr.DataArray) -> tuple[int, ...] | None:
    """The months present, in season order, when they form one consecutive run shorter than a year (DJF data:
    (12, 1, 2), so that a winter is one season year); else None (calendar years)."""
    from downscale.data.calendar import date_keys

    months = sorted({int(m) for m in date_keys(time) // 100 % 100}) if len(time) else []  # cftime or datetime64
    if not months or len(months) == 12:
        return None
    start = next((m for m in months if (m - 2) % 12 + 1 not in months), None)
    run = [(start - 1 + k) % 12 + 1 for k in range(len(months))] if start else []
    return tuple(run) if sorted(run) == months else None


def _day_numbers(time: xr.DataArray) -> np.ndarray:
    """Integer day number of each time step (consecutive dates differ by 1, in the data's calendar)."""
    from downscale.data.calendar import calendar_of, time_values

    values = time_values(time)
    if np.issubdtype(values.dtype, np.datetime64):
        return (values.astype("datetime64[D]").astype(np.int64)).astype(np.int64)
    import cftime

    return np.floor(cftime.date2num(values, "days since 1800-01-01", calendar_of(time))).astype(np.int64)


def time_step(da: xr.DataArray | Any) -> float | None:
    """The native time step of ``da`` (data with a ``time`` coordinate, or a time axis) in seconds: the most
    common step between consecutive times (gaps between seasons do not count); None with fewer than two."""
    from downscale.data.calendar import time_step_seconds, time_values

    if len(np.unique(time_values(da))) < 2:
        return None
    return time_step_seconds(da)


def is_subdaily(da: xr.DataArray | Any) -> bool:
    """Whether ``da`` has several time steps a day (a native step shorter than a day)."""
    step = time_step(da)
    return step is not None and step < DAY_SECONDS - 1.0


def _is_amount(da: xr.DataArray) -> bool:
    """Whether ``da`` is a precipitation amount per step (kg m-2, or a depth of a precipitation variable)."""
    units = str(da.attrs.get("units", "")).strip()
    try:
        dim = _ureg().Quantity(1.0, units).dimensionality
    except Exception:  # pint raises several exception types for unknown units
        return False
    if dim == _ureg().Quantity(1.0, "kg m-2").dimensionality:
        return True
    hint = f"{da.name or ''} {da.attrs.get('standard_name', '')}".lower()
    return dim == _ureg().Quantity(1.0, "m").dimensionality and ("precipitation" in hint or hint.split()[:1] == ["pr"])


def to_daily(da: xr.DataArray, how: str | None = None) -> xr.DataArray:
    """Daily values of a sub-daily field, grouping the steps by calendar day (any calendar: the date of each
    stamp in its own calendar, time of day ignored).

    ``how``: ``mean``, ``sum``, ``max`` or ``min``; None picks ``sum`` for a precipitation amount per step
    (``kg m-2``) and ``mean`` for anything else -- temperatures, and rates and fluxes (``kg m-2 s-1``,
    ``mm h-1``), whose daily mean is the day's mean rate in the same units (so that the precipitation indices,
    which convert to mm/day, read daily totals).  A day with a NaN step is NaN (an incomplete day is not a day's
    value).  The result is stamped at midnight of each day, keeps the attributes (``frequency: day``) and the
    order of the dimensions; any dimension besides ``time`` (members) is kept."""
    from downscale.data.calendar import date_keys, time_values

    if not isinstance(da, xr.DataArray) or "time" not in da.dims:
        raise TypeError("to_daily needs an xarray DataArray with a 'time' dimension")
    how = how or ("sum" if _is_amount(da) else "mean")
    if how not in ("mean", "sum", "max", "min"):
        raise ValueError(f"to_daily: how must be 'mean', 'sum', 'max' or 'min', not {how!r}")
    d = da.transpose("time", ...)
    if d.sizes["time"] == 0:
        return da.copy()
    keys = date_keys(d["time"])
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    a = np.asarray(d.values, np.float64)[order]
    if how in ("mean", "sum"):
        out = np.add.reduceat(a, starts, axis=0)
        if how == "mean":
            counts = np.diff(np.r_[starts, sorted_keys.size]).astype(np.float64)
            out = out / counts.reshape((-1,) + (1,) * (a.ndim - 1))
    else:
        out = (np.maximum if how == "max" else np.minimum).reduceat(a, starts, axis=0)
    first = time_values(d["time"])[order][starts]
    if np.issubdtype(first.dtype, np.datetime64):
        stamps: Any = first.astype("datetime64[D]").astype("datetime64[ns]")
    else:
        stamps = np.array([t.replace(hour=0, minute=0, second=0, microsecond=0) for t in first], dtype=object)
    coords: dict[str, Any] = {k: v for k, v in d.coords.items() if "time" not in v.dims}
    coords["time"] = stamps
    attrs = {**d.attrs, "frequency": "day"}
    result = xr.DataArray(out, dims=d.dims, coords=coords, name=d.name, attrs=attrs)
    return result.transpose(*da.dims)


def _daily(da: xr.DataArray) -> xr.DataArray:
    """``da`` as daily values: aggregated by :func:`to_daily` when sub-daily, else as it is."""
    return to_daily(da) if is_subdaily(da) else da


def _step_seconds(time: xr.DataArray) -> np.ndarray:
    """Seconds of each time stamp since 1800-01-01, in the data's calendar (float64)."""
    from downscale.data.calendar import calendar_of, time_values

    values = time_values(time)
    if np.issubdtype(values.dtype, np.datetime64):
        return (values - np.datetime64("1800-01-01T00:00:00")).astype("timedelta64[ms]").astype(np.float64) / 1e3
    import cftime

    return np.asarray(cftime.date2num(values, "seconds since 1800-01-01", calendar_of(time)), np.float64)


def _to_pr_units(da: xr.DataArray) -> xr.DataArray:
    from downscale.data.units import convert_units

    units = " ".join(str(da.attrs["units"]).split())
    if units == PR_UNITS:
        return da
    try:
        return convert_units(da, PR_UNITS)
    except UnitsError:
        raise UnitsError(
            "a precipitation index needs a precipitation rate or flux",
            variable=str(da.name),
            found=units,
            expected="units convertible to mm day-1 (e.g. kg m-2 s-1)",
            fix="give the precipitation field, with its units attribute",
        ) from None


def pr_threshold(value: float | str) -> float:
    """A precipitation threshold in mm/day: a number (already mm/day) or a string with units ("1 mm/day")."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    from downscale.data.units import convert_units

    try:
        q = _ureg().Quantity(str(value))
    except Exception:
        raise UnitsError(f"cannot read the threshold '{value}'", fix="write e.g. 1.0 (mm/day) or '1 mm/day'") from None
    da = xr.DataArray(
        float(q.magnitude), attrs={"units": f"{q.units:~}".strip() or "1", "standard_name": "lwe_precipitation_rate"}
    )
    try:
        return float(convert_units(da, PR_UNITS).values)
    except UnitsError:
        raise UnitsError(
            f"the threshold '{value}' is not a precipitation rate",
            expected="e.g. '1 mm/day'",
            fix="give a rate such as '1 mm/day' or '0.1 mm/h'",
        ) from None


def threshold_in(value: float | str, units: str) -> float:
    """A threshold that carries its units (``"25 degC"``) as a number in ``units`` (e.g. 298.15 for K)."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        raise UnitsError(
            f"the threshold {value} has no units",
            expected="a value with units, e.g. '25 degC'",
            fix=f"write the threshold with its units, e.g. '{value} degC'",
        )
    text = str(value).strip()
    number, _, unit = text.partition(" ")
    try:
        q = _ureg().Quantity(float(number), unit.strip()) if unit.strip() else _ureg().Quantity(text)
        return float(q.to(units).magnitude)
    except Exception:  # pint raises several exception types for bad or incompatible units
        raise UnitsError(
            f"cannot convert the threshold '{value}' to {units}",
            expected=f"units convertible to {units}",
            fix="write e.g. '25 degC' or '298.15 K'",
        ) from None


def _spatial_result(values: np.ndarray, template: xr.DataArray, name: str, units: str) -> xr.DataArray:
    spatial = template.dims[1:]
    coords = {k: v for k, v in template.coords.items() if set(v.dims) <= set(spatial)}
    return xr.DataArray(values, dims=spatial, coords=coords, name=name, attrs={"units": units})


def _yearly(
    da: xr.DataArray, years: np.ndarray, reduce: Callable[[np.ndarray, np.ndarray], np.ndarray], name: str, units: str
) -> xr.DataArray:
    """``reduce(values (t, y, x), day_numbers (t,)) -> (y, x)`` for each season year, stacked as ``(year, y, x)``."""
    a = np.asarray(da.values, dtype=np.float64)
    days = _day_numbers(da["time"])
    out = []
    labels = np.unique(years)
    for year in labels:
        sel = years == year
        out.append(reduce(a[sel], days[sel]))
    values = np.stack(out) if out else np.empty((0, *a.shape[1:]))
    spatial = da.dims[1:]
    coords = {k: v for k, v in da.coords.items() if set(v.dims) <= set(spatial)}
    coords["year"] = labels
    return xr.DataArray(values, dims=("year", *spatial), coords=coords, name=name, attrs={"units": units})


def _quiet(func: Callable, *args: Any, **kwargs: Any) -> Any:
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(*args, **kwargs)


def _count(cond: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid.any(axis=0), np.sum(cond & valid, axis=0).astype(np.float64), np.nan)


def _longest_spell(cond: np.ndarray, valid: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Longest run of consecutive dates where ``cond`` holds, per cell; NaN where no valid day."""
    run = np.zeros(cond.shape[1:])
    best = np.zeros(cond.shape[1:])
    for i in range(cond.shape[0]):
        if i > 0 and days[i] - days[i - 1] != 1:
            run[:] = 0
        run = np.where(cond[i] & valid[i], run + 1, 0)
        np.maximum(best, run, out=best)
    return np.where(valid.any(axis=0), best, np.nan)


# --------------------------------------------------------------------------- any variable
@_register("mean")
def mean(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Time mean of each cell, in the input's units."""
    da, _ = select_season(_check(da, "mean"), season)
    values = _quiet(np.nanmean, np.asarray(da.values, np.float64), axis=0)
    return _spatial_result(values, da, "mean", da.attrs["units"])


@_register("quantile")
def quantile(da: xr.DataArray, *, q: float = 0.99, season: str | None = None) -> xr.DataArray:
    """Quantile ``q`` over all days of each cell (linear interpolation), in the input's units."""
    if not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], not {q}")
    da, _ = select_season(_check(da, "quantile"), season)
    values = _quiet(np.nanquantile, np.asarray(da.values, np.float64), float(q), axis=0)
    return _spatial_result(values, da, f"q{float(q):g}", da.attrs["units"])


@_register("lag1_autocorrelation", units="1")
def lag1_autocorrelation(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Pearson correlation of each step with the next, at the native step (pairs across gaps are left out).

    Daily data pair consecutive calendar days; sub-daily data pair steps one native step apart (the most
    common step: an hourly field gives the hour-to-hour autocorrelation)."""
    da, _ = select_season(_check(da, "lag1_autocorrelation"), season)
    a = np.asarray(da.values, np.float64)
    step = time_step(da)
    if step is not None and step < DAY_SECONDS - 1.0:
        keep = np.flatnonzero(np.abs(np.diff(_step_seconds(da["time"])) - step) < 1.0)
    else:
        keep = np.flatnonzero(np.diff(_day_numbers(da["time"])) == 1)
    x, y = a[keep], a[keep + 1]
    valid = np.isfinite(x) & np.isfinite(y)
    x, y = np.where(valid, x, np.nan), np.where(valid, y, np.nan)
    dx = x - _quiet(np.nanmean, x, axis=0)
    dy = y - _quiet(np.nanmean, y, axis=0)
    num = np.nansum(dx * dy, axis=0)
    den = np.sqrt(np.nansum(dx**2, axis=0) * np.nansum(dy**2, axis=0))
    r = np.where((den > 0) & (valid.sum(axis=0) >= 3), num / np.where(den > 0, den, 1.0), np.nan)
    return _spatial_result(r, da, "lag1_autocorrelation", "1")


@_register("interannual_variability")
def interannual_variability(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Standard deviation (ddof=1) across season years of the seasonal means, in the input's units."""
    da, years = select_season(_check(da, "interannual_variability"), season)
    means = _yearly(da, years, lambda a, _: _quiet(np.nanmean, a, axis=0), "seasonal_mean", da.attrs["units"])
    values = (
        _quiet(np.nanstd, means.values, axis=0, ddof=1)
        if means.sizes["year"] >= 2
        else np.full(means.shape[1:], np.nan)
    )
    return _spatial_result(values, da, "interannual_variability", da.attrs["units"])


# --------------------------------------------------------------------------- sub-daily
@_register("daily_max", frequency="subdaily")
def daily_max(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Time mean of the daily maxima (the largest step of each calendar day), in the input's units."""
    da, _ = select_season(_check(da, "daily_max"), season)
    peaks = to_daily(da, "max")
    values = _quiet(np.nanmean, np.asarray(peaks.values, np.float64), axis=0)
    return _spatial_result(values, da, "daily_max", da.attrs["units"])


@_register("diurnal_amplitude", frequency="subdaily")
def diurnal_amplitude(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Amplitude (max - min) of the mean diurnal cycle (mean by UTC hour of day) of each cell, input's units.

    NaN everywhere when the steps fall on fewer than two hours of day (daily data have no diurnal cycle)."""
    from downscale.skill.metrics import diurnal_amplitude as amplitude
    from downscale.skill.metrics import diurnal_cycle, hour_of_day

    da, _ = select_season(_check(da, "diurnal_amplitude"), season)
    if np.unique(hour_of_day(da["time"])).size < 2:
        return _spatial_result(np.full(da.shape[1:], np.nan), da, "diurnal_amplitude", da.attrs["units"])
    values = np.asarray(amplitude(diurnal_cycle(da)).values, np.float64)
    return _spatial_result(values, da, "diurnal_amplitude", da.attrs["units"])


# --------------------------------------------------------------------------- temperature
@_register("txx", applies_to="temperature", frequency="daily")
def txx(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Warmest day of each season year (TXx when given tasmax), in the input's units."""
    da, years = select_season(_daily(_check(da, "txx")), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmax, a, axis=0), "txx", da.attrs["units"])


@_register("txn", applies_to="temperature", frequency="daily")
def txn(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Coldest day of each season year (TXn when given tasmax), in the input's units."""
    da, years = select_season(_daily(_check(da, "txn")), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmin, a, axis=0), "txn", da.attrs["units"])


@_register("su", applies_to="temperature", frequency="daily", units="days")
def su(da: xr.DataArray, *, thresh: float | str = "25 degC", season: str | None = None) -> xr.DataArray:
    """Number of days above ``thresh`` (which carries its units, e.g. ``"25 degC"``) per season year."""
    da, years = select_season(_daily(_check(da, "su")), season)
    t = threshold_in(thresh, str(da.attrs["units"]))

    def count(a: np.ndarray, _: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _count(np.where(valid, a, -np.inf) > t, valid)

    return _yearly(da, years, count, "su", "days")


# --------------------------------------------------------------------------- precipitation (mm/day)
@_register("rx1day", applies_to="precipitation", frequency="daily", units="precipitation")
def rx1day(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Wettest day of each season year, in mm/day."""
    da, years = select_season(_to_pr_units(_daily(_check(da, "rx1day"))), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmax, a, axis=0), "rx1day", PR_UNITS)


@_register("sdii", applies_to="precipitation", frequency="daily", units="precipitation")
def sdii(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Simple daily intensity: mean precipitation of the wet days (``>= thresh`` mm/day) per season year, mm/day.

    NaN for a year without a wet day."""
    da, years = select_season(_to_pr_units(_daily(_check(da, "sdii"))), season)
    t = pr_threshold(thresh)

    def intensity(a: np.ndarray, _: np.ndarray) -> np.ndarray:
        wet = np.isfinite(a) & (np.where(np.isfinite(a), a, -np.inf) >= t)
        n = wet.sum(axis=0)
        return np.where(n > 0, np.where(wet, a, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)

    return _yearly(da, years, intensity, "sdii", PR_UNITS)


@_register("cdd", applies_to="precipitation", frequency="daily", units="days")
def cdd(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Longest run of consecutive dry days (``< thresh`` mm/day) per season year, in days."""
    da, years = select_season(_to_pr_units(_daily(_check(da, "cdd"))), season)
    t = pr_threshold(thresh)

    def spell(a: np.ndarray, days: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _longest_spell(np.where(valid, a, np.inf) < t, valid, days)

    return _yearly(da, years, spell, "cdd", "days")


@_register("cwd", applies_to="precipitation", frequency="daily", units="days")
def cwd(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Longest run of consecutive wet days (``>= thresh`` mm/day) per season year, in days."""
    da, years = select_season(_to_pr_units(_daily(_check(da, "cwd"))), season)
    t = pr_threshold(thresh)

    def spell(a: np.ndarray, days: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _longest_spell(np.where(valid, a, -np.inf) >= t, valid, days)

    return _yearly(da, years, spell, "cwd", "days")


@_register("wet_day_frequency", applies_to="precipitation", frequency="daily", units="%")
def wet_day_frequency(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Percentage (0..100) of valid days with at least ``thresh`` mm/day."""
    da, _ = select_season(_to_pr_units(_daily(_check(da, "wet_day_frequency"))), season)
    from downscale.skill.metrics import wet_day_frequency as frequency

    values = 100.0 * frequency(da, threshold=pr_threshold(thresh)).values
    return _spatial_result(values, da, "wet_day_frequency", "%")


# --------------------------------------------------------------------------- helpers for diagnostics
def climatology(index: xr.DataArray) -> xr.DataArray:
    """A ``(y, x)`` field: the mean over season years of a per-year index; a climatological index as it is."""
    if "year" not in index.dims:
        return index
    values = _quiet(np.nanmean, index.values, axis=index.dims.index("year"))
    return index.isel(year=0, drop=True).copy(data=values)


def compute_index(da: xr.DataArray, name: str, **params: Any) -> xr.DataArray:
    """The climatological ``(y, x)`` field of registered index ``name`` (e.g. ``rx1day``) of ``da``."""
    spec = INDICES.get(name)
    try:
        return climatology(spec.func(da, **params))
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            import inspect

            allowed = [p for p in inspect.signature(spec.func).parameters if p != "da"]
            from downscale.errors import RecipeError

            raise RecipeError(
                f"index '{name}' got an unknown option",
                found=", ".join(sorted(params)),
                expected=f"options among {', '.join(allowed)}",
                fix="remove or rename the option",
            ) from None
        raise
