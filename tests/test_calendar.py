"""Calendars, seasons, periods and date pairing (downscale.data.calendar)."""

from __future__ import annotations

import datetime
from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr

from downscale.data.calendar import (
    Period,
    calendar_of,
    check_period_in_calendar,
    check_same_calendar,
    date_keys,
    day_of_year_features,
    season_year,
    select_period,
    time_step_seconds,
)
from downscale.data.io import open_dataset
from downscale.errors import CalendarError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "iberia"
RACMO_TAS = DATA / "cordex" / "tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
CNRM_TAS = DATA / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"

CALENDARS = ["standard", "proleptic_gregorian", "julian", "noleap", "all_leap", "360_day"]


def _daily(calendar: str, start: str = "1982-01-01", end: str = "1985-12-30") -> xr.DataArray:
    """A daily series (values = 0..T-1) on a cftime axis of ``calendar``."""
    time = xr.date_range(start, end, freq="D", calendar=calendar, use_cftime=True)
    return xr.DataArray(np.arange(time.size, dtype=np.float32), dims="time", coords={"time": time}, name="tas")


@pytest.mark.parametrize(
    ("calendar", "djf1984", "djf1983"),
    [
        ("standard", 91, 90),
        ("proleptic_gregorian", 91, 90),
        ("julian", 91, 90),
        ("noleap", 90, 90),
        ("all_leap", 91, 91),
        ("360_day", 90, 90),
    ],
)
def test_djf_counts_per_calendar(calendar, djf1984, djf1983):
    da = _daily(calendar)
    assert calendar_of(da) == calendar
    assert select_period(da, Period(years=(1984, 1984), season="DJF")).sizes["time"] == djf1984
    assert select_period(da, Period(years=(1983, 1983), season="DJF")).sizes["time"] == djf1983
    sel = select_period(da, Period(years=(1984, 1984), season="DJF"))
    first, last = sel.time.values[0], sel.time.values[-1]
    assert (first.year, first.month, first.day) == (1983, 12, 1)  # DJF 1984 starts in December 1983
    assert (last.year, last.month) == (1984, 2)
    jja = select_period(da, Period(years=(1984, 1985), season="JJA")).sizes["time"]
    assert jja == (180 if calendar == "360_day" else 184)


def test_months_start_end_and_custom_seasons():
    da = _daily("noleap")
    ndjfm = select_period(da, Period(years=(1984, 1984), season="NDJFM"))
    assert ndjfm.sizes["time"] == 30 + 31 + 31 + 28 + 31
    assert Period(months=(12, 1, 2)).selected_months == (12, 1, 2)
    sel = select_period(da, Period(season="DJF", start="1983-12-15", end="1984-01-10"))
    assert sel.sizes["time"] == 17 + 10
    assert select_period(da, Period(start="1985-12-30")).sizes["time"] == 1
    assert select_period(da, Period(season="ANN")).sizes["time"] == da.sizes["time"]
    assert Period(years=(1983, 1997), season="djf").describe() == "DJF 1983-1997"
    with pytest.raises(CalendarError, match="unknown season"):
        Period(season="XYZ")
    with pytest.raises(CalendarError, match="invalid years"):
        Period(years=(1997, 1983))
    with pytest.raises(CalendarError, match="start is after end"):
        Period(start="2000-01-02", end="2000-01-01")


def test_years_past_2262_work():
    da = _daily("noleap", "2299-11-01", "2300-03-31")
    assert select_period(da, Period(years=(2300, 2300), season="DJF")).sizes["time"] == 90


@pytest.mark.parametrize(
    ("date", "calendar", "fix"),
    [
        ("1997-02-29", "noleap", "use 1997-02-28"),
        ("1997-02-29", "standard", "1997 is not a leap year"),
        ("2000-02-30", "standard", "use 2000-02-29"),
        ("2000-05-31", "360_day", "the 360_day calendar has 30-day months"),
        ("2000-02-29", "365_day", "no 29 February"),
    ],
)
def test_period_dates_must_exist_in_calendar(date, calendar, fix):
    with pytest.raises(CalendarError, match=fix) as info:
        check_period_in_calendar(Period(start=date), calendar, file="gcm.nc")
    assert "gcm.nc" in str(info.value) and date in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("date", "calendar"),
    [("2000-02-29", "standard"), ("2000-02-30", "360_day"), ("1997-02-29", "all_leap"), ("1900-02-29", "julian")],
)
def test_period_dates_valid(date, calendar):
    check_period_in_calendar(Period(end=date), calendar)


def test_select_period_errors():
    da = _daily("noleap")
    with pytest.raises(CalendarError, match="does not exist in the noleap calendar"):
        select_period(da, Period(end="1984-02-29"), file="gcm.nc")
    with pytest.raises(CalendarError, match="selects no time steps") as info:
        select_period(da, Period(years=(2050, 2060), season="DJF"), file="gcm.nc")
    msg = str(info.value)
    assert "DJF 2050-2060" in msg and "gcm.nc" in msg and "1982-01-01" in msg and "1985-12-30" in msg


def test_real_racmo_djf_1983_1997():
    ds = open_dataset(RACMO_TAS)
    sel = select_period(ds["tas"], Period(years=(1983, 1997), season="DJF"))
    assert sel.sizes["time"] == 15 * 90 + 4  # four leap Februaries: 1984, 1988, 1992, 1996
    assert sel.time.values[0] == cftime.DatetimeGregorian(1982, 12, 1, 12)
    years = season_year(sel)
    assert years.min() == 1983 and years.max() == 1997 and np.bincount(years)[1984] == 91


def test_season_year_mapping():
    time = [cftime.datetime(1983, m, 15, calendar="360_day") for m in (1, 2, 3, 11, 12)]
    np.testing.assert_array_equal(season_year(time), [1983, 1983, 1983, 1983, 1984])
    np.testing.assert_array_equal(season_year(time, "NDJFM"), [1983, 1983, 1983, 1984, 1984])
    np.testing.assert_array_equal(season_year(time, "ANN"), [1983] * 5)
    assert season_year(cftime.datetime(1999, 12, 31, calendar="standard")).tolist() == [2000]


@pytest.mark.parametrize(
    ("calendar", "year", "ndays", "last_day"),
    [
        ("standard", 1984, 366, 31),
        ("standard", 1983, 365, 31),
        ("proleptic_gregorian", 1984, 366, 31),
        ("noleap", 1984, 365, 31),
        ("all_leap", 1983, 366, 31),
        ("360_day", 1984, 360, 30),
    ],
)
def test_day_of_year_features(calendar, year, ndays, last_day):
    time = [cftime.datetime(year, 1, 1, 12, calendar=calendar), cftime.datetime(year, 12, last_day, calendar=calendar)]
    feats = day_of_year_features(time)
    assert feats.dtype == np.float32 and feats.shape == (2, 2)
    half = np.pi / ndays  # 2π * 0.5 / ndays
    np.testing.assert_allclose(feats[0], [np.cos(half), np.sin(half)], atol=1e-7)
    np.testing.assert_allclose(feats[1], [np.cos(half), -np.sin(half)], atol=1e-7)
    axis = _daily(calendar, f"{year}-01-01", f"{year}-12-{last_day}")
    full = day_of_year_features(axis)
    assert full.shape == (ndays, 2)
    np.testing.assert_allclose(np.hypot(full[:, 0], full[:, 1]), 1.0, atol=1e-6)
    np.testing.assert_allclose(full.mean(axis=0), 0.0, atol=1e-6)  # one full turn per year


def test_date_keys_pair_racmo_and_cnrm():
    racmo = open_dataset(RACMO_TAS)["time"]
    cnrm = open_dataset(CNRM_TAS)["time"]
    shifted = cnrm.values - datetime.timedelta(hours=12)  # 00:00 instead of 12:00: same calendar day
    a, b, c = date_keys(racmo), date_keys(cnrm), date_keys(shifted)
    assert a.dtype == np.int64 and a[0] == 19821201 and a.size == 1805
    assert np.isin(a, b).sum() == 1805 and np.array_equal(a, c)
    assert check_same_calendar(racmo, cnrm, RACMO_TAS, CNRM_TAS) == "standard"


def test_calendar_mismatch():
    gcm, rcm = _daily("noleap")["time"], _daily("standard")["time"]
    with pytest.raises(CalendarError, match="calendars differ: noleap here, standard in rcm.nc") as info:
        check_same_calendar(gcm, rcm, "gcm.nc", "rcm.nc")
    assert "convert_calendar" in str(info.value) and str(info.value).startswith("gcm.nc:")
    assert check_same_calendar(_daily("proleptic_gregorian"), rcm) == "proleptic_gregorian"


def test_calendar_of_normalises_and_time_step():
    assert calendar_of("gregorian") == "standard"
    assert calendar_of("365_day") == "noleap"
    assert calendar_of("366_day") == "all_leap"
    assert calendar_of(_daily("360_day").indexes["time"]) == "360_day"
    assert calendar_of(cftime.DatetimeNoLeap(2000, 1, 1)) == "noleap"
    djf = select_period(_daily("standard"), Period(season="DJF"))
    assert time_step_seconds(djf) == 86400.0  # the 9-month gaps do not matter
