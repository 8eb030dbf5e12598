"""Climate indices: pure, unit-aware functions, xarray in and xarray out (in the style of xclim's indices).

Every index takes a DataArray with a ``time`` dimension and two spatial dimensions and returns either

* a **climatological** field ``(y, x)`` (mean, quantile, wet-day frequency, lag-1 autocorrelation, interannual
  variability), or
* one value per **season year** ``(year, y, x)`` (TXx, TXn, SU, Rx1day, SDII, CDD, CWD); :func:`climatology`
  averages those over the years.

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
    "interannual_variability",
    "lag1_autocorrelation",
    "mean",
    "quantile",
    "rx1day",
    "sdii",
    "select_season",
    "su",
    "txn",
    "txx",
    "wet_day_frequency",
]

#: units every precipitation index works in
PR_UNITS = "mm day-1"


@dataclass(frozen=True)
class IndexSpec:
    """A registered index: its function, which fields it applies to and the units of its result.

    ``applies_to``: ``temperature`` (units convertible to K), ``precipitation`` (a precipitation flux or rate)
    or ``any``.  ``units``: ``input`` (the input's units), ``precipitation`` (mm day-1) or fixed units.
    """

    name: str
    func: Callable[..., xr.DataArray]
    applies_to: str = "any"
    units: str = "input"
    description: str = ""

    def result_units(self, input_units: str) -> str:
        return {"input": input_units, "precipitation": PR_UNITS}.get(self.units, self.units)


INDICES: Registry[IndexSpec] = Registry("index")


def _register(name: str, applies_to: str = "any", units: str = "input") -> Callable:
    def deco(func: Callable) -> Callable:
        doc = (func.__doc__ or "").strip().splitlines()
        INDICES.register(name)(IndexSpec(name, func, applies_to, units, doc[0] if doc else ""))
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
    from downscale.data.calendar import time_values

    months = sorted({t.month for t in time_values(time)}) if len(time) else []
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
    """Pearson correlation of each day with the next calendar day (pairs across date gaps are left out)."""
    da, _ = select_season(_check(da, "lag1_autocorrelation"), season)
    a = np.asarray(da.values, np.float64)
    days = _day_numbers(da["time"])
    keep = np.flatnonzero(np.diff(days) == 1)
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


# --------------------------------------------------------------------------- temperature
@_register("txx", applies_to="temperature")
def txx(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Warmest day of each season year (TXx when given tasmax), in the input's units."""
    da, years = select_season(_check(da, "txx"), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmax, a, axis=0), "txx", da.attrs["units"])


@_register("txn", applies_to="temperature")
def txn(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Coldest day of each season year (TXn when given tasmax), in the input's units."""
    da, years = select_season(_check(da, "txn"), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmin, a, axis=0), "txn", da.attrs["units"])


@_register("su", applies_to="temperature", units="days")
def su(da: xr.DataArray, *, thresh: float | str = "25 degC", season: str | None = None) -> xr.DataArray:
    """Number of days above ``thresh`` (which carries its units, e.g. ``"25 degC"``) per season year."""
    da, years = select_season(_check(da, "su"), season)
    t = threshold_in(thresh, str(da.attrs["units"]))

    def count(a: np.ndarray, _: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _count(np.where(valid, a, -np.inf) > t, valid)

    return _yearly(da, years, count, "su", "days")


# --------------------------------------------------------------------------- precipitation (mm/day)
@_register("rx1day", applies_to="precipitation", units="precipitation")
def rx1day(da: xr.DataArray, *, season: str | None = None) -> xr.DataArray:
    """Wettest day of each season year, in mm/day."""
    da, years = select_season(_to_pr_units(_check(da, "rx1day")), season)
    return _yearly(da, years, lambda a, _: _quiet(np.nanmax, a, axis=0), "rx1day", PR_UNITS)


@_register("sdii", applies_to="precipitation", units="precipitation")
def sdii(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Simple daily intensity: mean precipitation of the wet days (``>= thresh`` mm/day) per season year, mm/day.

    NaN for a year without a wet day."""
    da, years = select_season(_to_pr_units(_check(da, "sdii")), season)
    t = pr_threshold(thresh)

    def intensity(a: np.ndarray, _: np.ndarray) -> np.ndarray:
        wet = np.isfinite(a) & (np.where(np.isfinite(a), a, -np.inf) >= t)
        n = wet.sum(axis=0)
        return np.where(n > 0, np.where(wet, a, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)

    return _yearly(da, years, intensity, "sdii", PR_UNITS)


@_register("cdd", applies_to="precipitation", units="days")
def cdd(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Longest run of consecutive dry days (``< thresh`` mm/day) per season year, in days."""
    da, years = select_season(_to_pr_units(_check(da, "cdd")), season)
    t = pr_threshold(thresh)

    def spell(a: np.ndarray, days: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _longest_spell(np.where(valid, a, np.inf) < t, valid, days)

    return _yearly(da, years, spell, "cdd", "days")


@_register("cwd", applies_to="precipitation", units="days")
def cwd(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Longest run of consecutive wet days (``>= thresh`` mm/day) per season year, in days."""
    da, years = select_season(_to_pr_units(_check(da, "cwd")), season)
    t = pr_threshold(thresh)

    def spell(a: np.ndarray, days: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        return _longest_spell(np.where(valid, a, -np.inf) >= t, valid, days)

    return _yearly(da, years, spell, "cwd", "days")


@_register("wet_day_frequency", applies_to="precipitation", units="%")
def wet_day_frequency(da: xr.DataArray, *, thresh: float | str = 1.0, season: str | None = None) -> xr.DataArray:
    """Percentage (0..100) of valid days with at least ``thresh`` mm/day."""
    da, _ = select_season(_to_pr_units(_check(da, "wet_day_frequency")), season)
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
