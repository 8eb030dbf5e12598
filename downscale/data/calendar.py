"""Calendars, seasons and periods on cftime time axes.

Time is always decoded as cftime objects in ``downscale`` (see :func:`downscale.data.io.open_dataset`),
so the standard, proleptic_gregorian, julian, noleap (365_day), all_leap (366_day) and 360_day
calendars behave alike and years past 2262 work.

Season years: the DJF winter of year ``Y`` is Dec(Y-1) + Jan(Y) + Feb(Y).  In general, for a
season whose months wrap around the new year (``DJF``, ``NDJFM``...), the months before the wrap
count towards the next year.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from os import PathLike
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import numpy as np

from downscale.errors import CalendarError, DataError

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = [
    "SEASONS",
    "Period",
    "TimeLike",
    "calendar_of",
    "check_period_in_calendar",
    "check_same_calendar",
    "check_time_axis",
    "date_keys",
    "day_of_year_features",
    "days_in_year",
    "format_date",
    "format_stamp",
    "month_keys",
    "normalise_calendar",
    "season_months",
    "season_year",
    "seconds_of_day",
    "select_period",
    "stamp_keys",
    "time_bounds",
    "time_step_seconds",
    "time_values",
]

#: The standard seasons (and the whole year) -> their months, in order.
SEASONS: dict[str, tuple[int, ...]] = {
    "DJF": (12, 1, 2),
    "MAM": (3, 4, 5),
    "JJA": (6, 7, 8),
    "SON": (9, 10, 11),
    "ANN": tuple(range(1, 13)),
}

_ALIASES = {"gregorian": "standard", "365_day": "noleap", "366_day": "all_leap"}
_KNOWN = {"standard", "proleptic_gregorian", "julian", "noleap", "all_leap", "360_day"}
# Calendars that agree on every date after 1582-10-15.
_GREGORIAN_LIKE = {"standard", "proleptic_gregorian"}
_INITIALS = "JFMAMJJASOND" * 2
_DATE_RE = re.compile(r"^(-?\d{1,4})-(\d{1,2})-(\d{1,2})(?:[T ](.*))?$")
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d*)?)?Z?$")

#: A time axis as the functions here take it: data with a ``time`` coordinate, the time coordinate itself, a
#: (CFTime)Index, an array or sequence of dates, or one date.  A cftime date has no type information, so to the
#: type checker it is Any, which every parameter accepts.
TimeLike: TypeAlias = "xr.DataArray | xr.Dataset | pd.Index | np.ndarray | Sequence[Any] | _dt.date"

_XarrayT = TypeVar("_XarrayT", "xr.DataArray", "xr.Dataset")


def normalise_calendar(name: str) -> str:
    """Lower-case CF calendar name with aliases resolved (``gregorian`` -> ``standard``...)."""
    cal = str(name).strip().lower()
    return _ALIASES.get(cal, cal)


def time_values(time: TimeLike) -> np.ndarray:
    """The time values of ``time`` as a 1-D numpy array (cftime objects or datetime64).

    ``time`` may be a DataArray/Dataset with a ``time`` coordinate, a time DataArray, a
    (CFTime)Index, a sequence of cftime objects or a single cftime/datetime object.
    """
    if hasattr(time, "coords") and "time" in getattr(time, "coords", {}) and getattr(time, "name", None) != "time":
        time = cast("xr.DataArray | xr.Dataset", time)["time"]  # data with a time coordinate: xarray
    if hasattr(time, "values") and not isinstance(time, np.ndarray):
        values = np.asarray(time.values)
    elif isinstance(time, (_dt.datetime, _dt.date)) or (hasattr(time, "calendar") and not hasattr(time, "__len__")):
        values = np.asarray([time], dtype=object)
    else:
        values = np.asarray(time)
    return values.reshape(-1)


def calendar_of(obj: str | TimeLike) -> str:
    """The normalised calendar of a calendar name, a time axis, or data with a ``time`` coordinate."""
    if isinstance(obj, str):
        return normalise_calendar(obj)
    is_xarray = hasattr(obj, "coords") and hasattr(obj, "dims")
    cal = None if is_xarray else getattr(obj, "calendar", None)  # CFTimeIndex, cftime.datetime
    if isinstance(cal, str) and cal:
        return normalise_calendar(cal)
    values = time_values(obj)
    if values.size == 0:
        raise CalendarError("cannot tell the calendar of an empty time axis", fix="check the time selection")
    cal = getattr(values[0], "calendar", None)
    if isinstance(cal, str) and cal:
        return normalise_calendar(cal)
    if np.issubdtype(values.dtype, np.datetime64) or isinstance(values[0], _dt.datetime):
        return "proleptic_gregorian"
    raise CalendarError(
        "cannot tell the calendar of the time axis",
        found=type(values[0]).__name__,
        expected="cftime datetimes",
        fix="open files with downscale.data.io.open_dataset (cftime decoding)",
    )


def _ymd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day arrays (int64) of cftime/datetime64 values."""
    if np.issubdtype(values.dtype, np.datetime64):
        import pandas as pd

        idx = pd.DatetimeIndex(values)
        return (np.asarray(idx.year, np.int64), np.asarray(idx.month, np.int64), np.asarray(idx.day, np.int64))
    n = values.size
    years = np.fromiter((t.year for t in values), np.int64, count=n)
    months = np.fromiter((t.month for t in values), np.int64, count=n)
    days = np.fromiter((t.day for t in values), np.int64, count=n)
    return years, months, days


def season_months(season: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """Months of a season: ``"DJF"`` -> (12, 1, 2); month initials like ``"NDJFM"``; a month tuple; None = all."""
    if season is None:
        return None
    if not isinstance(season, str):
        months = tuple(int(m) for m in season)
        if not months or any(m < 1 or m > 12 for m in months) or len(set(months)) != len(months):
            raise CalendarError(
                "invalid months", found=months, expected="distinct months 1..12", fix="e.g. months=(12, 1, 2)"
            )
        return months
    key = season.strip().upper()
    if key in SEASONS:
        return SEASONS[key]
    starts = [i for i in range(12) if _INITIALS.startswith(key, i)] if 2 <= len(key) <= 11 else []
    if len(starts) != 1:
        raise CalendarError(
            f"unknown season '{season}'",
            expected="DJF, MAM, JJA, SON, ANN or consecutive month initials such as NDJFM",
            fix="use one of the standard seasons or give months=(...)",
        )
    return tuple((starts[0] + k) % 12 + 1 for k in range(len(key)))


def _wrap_shift(months: tuple[int, ...] | None, month: np.ndarray) -> np.ndarray:
    """1 for months that belong to the next season year (before the wrap of the month sequence), else 0."""
    if not months:
        return np.zeros(month.shape, np.int64)
    wrap = next((i for i in range(1, len(months)) if months[i] < months[i - 1]), None)
    if wrap is None:
        return np.zeros(month.shape, np.int64)
    return np.isin(month, months[:wrap]).astype(np.int64)


def season_year(time: TimeLike, season: str | Sequence[int] | None = "DJF") -> np.ndarray:
    """The season year of each time step (int64).

    With the default ``season="DJF"`` December counts towards the next year (winter 1983 =
    Dec 1982 + Jan/Feb 1983); for seasons that do not wrap (``MAM``, ``ANN``, None) it is the year.
    """
    years, months, _ = _ymd(time_values(time))
    return years + _wrap_shift(season_months(season), months)


def date_keys(time: TimeLike) -> np.ndarray:
    """``yyyymmdd`` int64 keys of each time step (time of day ignored), for pairing by calendar day."""
    years, months, days = _ymd(time_values(time))
    return years * 10000 + months * 100 + days


def month_keys(time: TimeLike) -> np.ndarray:
    """``yyyymm`` int64 keys of each time step (day and time of day ignored), for pairing by calendar month."""
    years, months, _ = _ymd(time_values(time))
    return years * 100 + months


def seconds_of_day(time: TimeLike) -> np.ndarray:
    """Seconds since 00:00 of each time step (float64), from the stamp itself: any calendar, cftime or datetime64."""
    values = time_values(time)
    if values.size == 0:
        return np.zeros(0, np.float64)
    if np.issubdtype(values.dtype, np.datetime64):
        ns = values.astype("datetime64[ns]")
        return (ns - ns.astype("datetime64[D]")).astype("timedelta64[ns]").astype(np.float64) / 1e9
    return np.fromiter(
        (t.hour * 3600.0 + t.minute * 60.0 + t.second + getattr(t, "microsecond", 0) / 1e6 for t in values),
        np.float64,
        count=values.size,
    )


def stamp_keys(time: TimeLike) -> np.ndarray:
    """Int64 keys ``yyyymmdd * 86400 + second of the day`` of each time step: equal exactly when two stamps are
    equal (to the second) in one calendar, ordered like the stamps; for pairing sub-daily data on exact stamps."""
    values = time_values(time)
    return date_keys(values) * 86400 + np.round(seconds_of_day(values)).astype(np.int64)


@lru_cache(maxsize=4096)
def days_in_year(year: int, calendar: str) -> int:
    """Number of days of ``year`` in ``calendar`` (normalised name)."""
    import cftime

    if calendar == "360_day":
        return 360
    if calendar == "noleap":
        return 365
    if calendar == "all_leap":
        return 366
    start = cftime.datetime(year, 1, 1, calendar=calendar)
    end = cftime.datetime(year + 1, 1, 1, calendar=calendar)
    return (end - start).days


def day_of_year_features(time: TimeLike) -> np.ndarray:
    """``[T, 2]`` float32: cos and sin of ``2π (dayofyear - 0.5) / days_in_year``.

    ``days_in_year`` follows the calendar: 360 (360_day), 365 (noleap), 366 (all_leap, leap
    years of the standard/julian/proleptic_gregorian calendars).
    """
    values = time_values(time)
    if values.size == 0:
        return np.zeros((0, 2), np.float32)
    if np.issubdtype(values.dtype, np.datetime64):
        import pandas as pd

        idx = pd.DatetimeIndex(values)
        doy = np.asarray(idx.dayofyear, np.float64)
        ndays = np.where(idx.is_leap_year, 366.0, 365.0)
    else:
        cal = calendar_of(values)
        doy = np.fromiter((t.dayofyr for t in values), np.float64, count=values.size)
        ndays = np.fromiter((days_in_year(int(t.year), cal) for t in values), np.float64, count=values.size)
    angle = 2.0 * np.pi * (doy - 0.5) / ndays
    return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def time_step_seconds(time: TimeLike) -> float:
    """The most common step between consecutive distinct times, in seconds (robust to gaps)."""
    values = time_values(time)
    if values.size < 2:
        raise DataError(
            "cannot infer the time step from fewer than two time steps",
            found=f"{values.size} time step(s)",
            fix="set the 'frequency' attribute or add time_bnds to the file",
        )
    values = np.sort(values)
    diffs = values[1:] - values[:-1]
    if np.issubdtype(np.asarray(diffs).dtype, np.timedelta64):
        seconds = np.asarray(diffs, "timedelta64[ms]").astype(np.float64) / 1000.0
    else:
        seconds = np.fromiter((d.total_seconds() for d in diffs), np.float64, count=diffs.size)
    seconds = seconds[seconds > 0]
    if seconds.size == 0:
        raise DataError("cannot infer the time step: all times are equal", fix="check the time axis")
    steps, counts = np.unique(np.round(seconds, 3), return_counts=True)
    return float(steps[np.argmax(counts)])


@dataclass(frozen=True)
class Period:
    """A time selection: season years, a season (or months) and/or inclusive ISO dates.

    ``years=(1983, 1997)`` is inclusive, in season years (DJF 1983 starts in December 1982).
    ``season`` is DJF, MAM, JJA, SON, ANN or consecutive month initials (``NDJFM``);
    ``months`` is an explicit month tuple in season order (``(12, 1, 2)``), an alternative to
    ``season``.  ``start``/``end`` are ``YYYY-MM-DD`` dates, inclusive (the whole end day), or time stamps
    ``YYYY-MM-DDTHH:MM`` (inclusive, to the minute), combinable with a season.
    """

    years: tuple[int, int] | None = None
    season: str | None = None
    start: str | None = None
    end: str | None = None
    months: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.years is not None:
            years = tuple(int(y) for y in self.years)
            if len(years) != 2 or years[0] > years[1]:
                raise CalendarError(
                    "invalid years",
                    found=self.years,
                    expected="(first, last) with first <= last",
                    fix="e.g. years=(1983, 1997)",
                )
            object.__setattr__(self, "years", years)
        if self.season is not None:
            object.__setattr__(self, "season", self.season.strip().upper())
            season_months(self.season)  # validates
        if self.months is not None:
            months = season_months(self.months)
            if self.season is not None and months != season_months(self.season):
                raise CalendarError(
                    "season and months disagree", found=f"{self.season} vs {months}", fix="give only one of them"
                )
            object.__setattr__(self, "months", months)
        for field in ("start", "end"):
            value = getattr(self, field)
            if value is not None:
                _parse_date(str(value))
                _parse_clock(str(value))
                object.__setattr__(self, field, str(value))
        if (
            self.start is not None
            and self.end is not None
            and _bound(self.start, end=False) > _bound(self.end, end=True)
        ):
            raise CalendarError("start is after end", found=f"{self.start} > {self.end}", fix="swap start and end")

    @property
    def selected_months(self) -> tuple[int, ...] | None:
        """The months selected (season order), or None for all months."""
        if self.months is not None:
            return self.months
        return season_months(self.season)

    def describe(self) -> str:
        """Short human description: ``"DJF 1983-1997"``."""
        parts: list[str] = []
        if self.season is not None:
            parts.append(self.season)
        elif self.months is not None:
            parts.append("months " + ",".join(str(m) for m in self.months))
        if self.years is not None:
            a, b = self.years
            parts.append(str(a) if a == b else f"{a}-{b}")
        if self.start is not None:
            parts.append(f"from {self.start}")
        if self.end is not None:
            parts.append(f"to {self.end}")
        return " ".join(parts) if parts else "all times"


def _parse_date(text: str) -> tuple[int, int, int]:
    match = _DATE_RE.match(text.strip())
    if match is None:
        raise CalendarError(
            f"cannot parse date '{text}'",
            expected="YYYY-MM-DD or YYYY-MM-DDTHH:MM",
            fix="write dates as 1983-12-01 or time stamps as 1983-12-01T06:00",
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _parse_clock(text: str) -> int | None:
    """Seconds since 00:00 of the time of day of ``text`` (``YYYY-MM-DDTHH:MM[:SS]``), or None for a date only."""
    match = _DATE_RE.match(text.strip())
    clock = match.group(4) if match is not None else None
    if clock is None or not clock.strip():
        return None
    hms = _CLOCK_RE.match(clock.strip())
    if hms is None:
        raise CalendarError(
            f"cannot parse the time of day of '{text}'",
            expected="YYYY-MM-DDTHH:MM",
            fix="write time stamps as 1983-12-01T06:00 (UTC)",
        )
    hour, minute, second = int(hms.group(1)), int(hms.group(2)), int(hms.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise CalendarError(
            f"'{text}' is not a time of day", expected="HH:MM from 00:00 to 23:59", fix="e.g. 1983-12-01T18:00"
        )
    return hour * 3600 + minute * 60 + second


def _key(ymd: tuple[int, int, int]) -> int:
    return ymd[0] * 10000 + ymd[1] * 100 + ymd[2]


def _bound(text: str, *, end: bool) -> int:
    """The :func:`stamp_keys` key of a period bound: a date-only start is its 00:00, a date-only end its last second."""
    clock = _parse_clock(text)
    if clock is None:
        clock = 86399 if end else 0
    return _key(_parse_date(text)) * 86400 + clock


def _last_day(year: int, month: int, calendar: str) -> int:
    import cftime

    return int(cftime.datetime(year, month, 1, calendar=calendar).daysinmonth)


def check_period_in_calendar(period: Period, calendar: str, file: str | PathLike | None = None) -> None:
    """Raise :class:`CalendarError` when ``period.start``/``end`` is not a date of ``calendar``."""
    import cftime

    cal = normalise_calendar(calendar)
    if cal not in _KNOWN:
        raise CalendarError(
            f"unsupported calendar '{calendar}'",
            file=file,
            expected=", ".join(sorted(_KNOWN)),
            fix="set a CF calendar attribute on the time variable",
        )
    for field in ("start", "end"):
        text = getattr(period, field)
        if text is None:
            continue
        year, month, day = _parse_date(text)
        if not 1 <= month <= 12:
            raise CalendarError(f"{field} date {text} has no month {month}", file=file, fix="use months 1..12")
        try:
            cftime.datetime(year, month, day, calendar=cal)
            continue
        except ValueError:
            pass
        last = _last_day(year, month, cal)
        if cal == "360_day":
            why = "the 360_day calendar has 30-day months"
        elif month == 2 and day == 29 and cal == "noleap":
            why = "the noleap calendar has no 29 February"
        elif month == 2 and day == 29:
            why = f"{year} is not a leap year in the {cal} calendar"
        else:
            why = f"month {month} of {year} has {last} days in the {cal} calendar"
        day_fix = min(day, last) if day >= 1 else 1
        raise CalendarError(
            f"{field} date {text} does not exist in the {cal} calendar",
            file=file,
            fix=f"{why}; use {year:04d}-{month:02d}-{day_fix:02d}",
        )


def select_period(da: _XarrayT, period: Period, file: str | PathLike | None = None) -> _XarrayT:
    """Select ``period`` from ``da`` (DataArray or Dataset with a cftime ``time`` axis); stays lazy.

    Raises :class:`CalendarError` when a start/end date does not exist in the data's calendar,
    or when nothing is selected (naming the period, the file and the data's time range).
    """
    values = time_values(da["time"])
    if values.size:
        check_period_in_calendar(period, calendar_of(da), file=file)
    years, months, days = _ymd(values)
    keep = np.ones(values.size, bool)
    sel_months = period.selected_months
    if sel_months is not None:
        keep &= np.isin(months, sel_months)
    if period.years is not None:
        syear = years + _wrap_shift(sel_months, months)
        keep &= (syear >= period.years[0]) & (syear <= period.years[1])
    keys = years * 10000 + months * 100 + days
    stamps: np.ndarray | None = None
    for bound, is_end in ((period.start, False), (period.end, True)):
        if bound is None:
            continue
        if _parse_clock(bound) is None:  # a date: the whole day, compared by calendar day
            day = _key(_parse_date(bound))
            keep &= (keys <= day) if is_end else (keys >= day)
        else:  # a time stamp: compared to the second, inclusive
            if stamps is None:
                stamps = keys * 86400 + np.round(seconds_of_day(values)).astype(np.int64)
            key = _bound(bound, end=is_end)
            keep &= (stamps <= key) if is_end else (stamps >= key)
    if not keep.any():
        found = (
            f"data from {format_date(values[0])} to {format_date(values[-1])} ({values.size} time steps)"
            if values.size
            else "an empty time axis"
        )
        raise CalendarError(
            f"period {period.describe()} selects no time steps",
            file=file,
            variable=getattr(da, "name", None) if isinstance(getattr(da, "name", None), str) else None,
            found=found,
            fix="choose years/dates inside the data's time range or add files that cover the period",
        )
    if keep.all():
        return da
    return da.isel(time=np.flatnonzero(keep))


def format_date(t: Any, *, compact: bool = False) -> str:  # Any: a cftime date (untyped) or datetime64
    """``YYYY-MM-DD`` (``YYYYMMDD`` when ``compact``) of a cftime date, numpy datetime64 or pandas Timestamp."""
    try:
        text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    except AttributeError:
        text = str(np.datetime_as_string(t, unit="D")) if isinstance(t, np.datetime64) else str(t)[:10]
    return text.replace("-", "") if compact else text


def format_stamp(t: Any) -> str:  # Any: a cftime date (untyped) or datetime64
    """``YYYY-MM-DD HH:MM`` (``:SS`` added when not zero) of a cftime date, numpy datetime64 or pandas Timestamp."""
    if isinstance(t, np.datetime64):
        text = str(np.datetime_as_string(t, unit="s")).replace("T", " ")
        return text[:-3] if text.endswith(":00") else text
    try:
        text = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"
        return text + (f":{t.second:02d}" if t.second else "")
    except AttributeError:
        return str(t)


def time_bounds(ds: xr.Dataset) -> xr.DataArray | None:
    """The time bounds variable of dataset ``ds`` (named by ``time.bounds``, else ``time_bnds``/``time_bounds``),
    or None."""
    if "time" not in ds.variables:
        return None
    name = ds["time"].attrs.get("bounds") or ds["time"].encoding.get("bounds")
    for candidate in (name, "time_bnds", "time_bounds"):
        if candidate and candidate in ds.variables and ds[candidate].ndim == 2:
            return ds[candidate]
    return None


def check_same_calendar(
    a_time: TimeLike,
    b_time: TimeLike,
    a_file: str | PathLike | None = None,
    b_file: str | PathLike | None = None,
) -> str:
    """Raise :class:`CalendarError` when two time axes use different calendars; return the calendar.

    ``standard`` and ``proleptic_gregorian`` are treated as the same (they agree after 1582).
    """
    a_cal, b_cal = calendar_of(a_time), calendar_of(b_time)
    if a_cal == b_cal or {a_cal, b_cal} <= _GREGORIAN_LIKE:
        return a_cal
    b_name = str(b_file) if b_file is not None else "the other input"
    raise CalendarError(
        f"calendars differ: {a_cal} here, {b_cal} in {b_name}",
        file=a_file,
        found=a_cal,
        expected=b_cal,
        fix=(
            f"convert one input to the other's calendar (e.g. xarray's "
            f"da.convert_calendar('{b_cal}', align_on='date')) or use inputs that share a calendar"
        ),
    )


def check_time_axis(time: TimeLike, *, file: str | PathLike | None = None, variable: str | None = None) -> None:
    """Raise :class:`CalendarError` unless ``time`` strictly increases: a stamp present twice, or a step that
    goes back in time, is named with both stamps and the fix (``ds.drop_duplicates('time')``,
    ``ds.sortby('time')``).  One vectorised comparison of neighbours; the rest only on error."""
    values = time_values(time)
    if values.size < 2:
        return
    increasing = np.asarray(values[1:] > values[:-1], dtype=bool)
    if increasing.all():
        return
    i = int(np.flatnonzero(~increasing)[0])
    a, b = format_stamp(values[i]), format_stamp(values[i + 1])
    if values[i + 1] == values[i]:
        count = values.size - np.unique(values).size
        raise CalendarError(
            f"{count} duplicate time stamp(s): steps {i} and {i + 1} are both at {a}",
            file=file,
            variable=variable,
            fix="remove the duplicated steps (e.g. ds = ds.drop_duplicates('time'))",
        )
    raise CalendarError(
        f"time is not increasing: step {i + 1} ({b}) comes after step {i} ({a})",
        file=file,
        variable=variable,
        fix="sort the time axis (e.g. ds = ds.sortby('time')) and check for duplicated steps",
    )
