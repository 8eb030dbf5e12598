"""Sub-daily data (issue 13): pairing on exact time stamps, frequencies, time_of_day, periods with hours, k-shot by
whole days, apply's frequency check.  The hourly fields are SYNTHETIC (examples/data/iberia-hourly/make_hourly.py), built
from the bundled daily RACMO data into a temporary folder."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr

from downscale.data.calendar import Period, date_keys, select_period, time_values
from downscale.data.forcings import compute_forcings, forcing_names
from downscale.data.io import check_frequency, open_dataset
from downscale.data.pairing import build_pairs
from downscale.data.shots import select_shots
from downscale.errors import CalendarError, DataError
from downscale.recipe import PeriodSpec, ShotsSpec, recipe_from_dict

HERE = Path(__file__).resolve().parent
DAYS = 6  # 144 hourly steps: enough for the fits, small enough to be fast


def _load_maker():
    spec = importlib.util.spec_from_file_location(
        "make_hourly", HERE.parent / "examples" / "data" / "iberia-hourly" / "make_hourly.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_hourly = _load_maker()


@pytest.fixture(scope="module")
def hourly(tmp_path_factory):
    """(fine targets, coarse predictors): SYNTHETIC hourly tas, written to a temporary folder."""
    return make_hourly.make(tmp_path_factory.mktemp("hourly"), days=DAYS, seed=0)


def _open(path: Path) -> xr.Dataset:
    return open_dataset(path).load()


def _rewrite(ds: xr.Dataset, path: Path, frequency: str, step_hours: float | None) -> Path:
    """``ds`` written as CF NetCDF with ``frequency`` and time_bnds of one step centred on each stamp."""
    ds = ds.drop_vars("time_bnds", errors="ignore")
    ds.attrs = {**ds.attrs, "frequency": frequency}
    if step_hours is not None:
        ds["time_bnds"] = (("time", "bnds"), make_hourly._bounds(ds["time"].values, step_hours))
        ds["time"].attrs["bounds"] = "time_bnds"
    else:
        ds["time"].attrs.pop("bounds", None)
    return make_hourly.write(ds, path) if "time_bnds" in ds else _write_plain(ds, path)


def _write_plain(ds: xr.Dataset, path: Path) -> Path:
    enc = {"time": {"units": make_hourly.TIME_UNITS, "calendar": "standard", "dtype": "float64"}}
    ds.to_netcdf(path, encoding=enc)
    return path


def _recipe(root: Path, predictors: Path, targets: Path, forcings=("season",)):
    return recipe_from_dict(
        {
            "name": "subdaily",
            "framework": "emulator",
            "data": {
                "predictors": {"tas": [str(predictors)]},
                "targets": {"tas": [str(targets)]},
                "forcings": list(forcings),
                "periods": {"train": {}},
            },
            "model": {"type": "simple_cnn", "width": 8},
        },
        root=root,
    )


def _shift(ds: xr.Dataset, **delta: float) -> xr.Dataset:
    return ds.assign_coords(time=ds["time"].values + dt.timedelta(**delta))


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Fix:" in text
    return text


# ------------------------------------------------------------------------- (a) hourly pairing and what it buys


def _nearest_fit_rmse(x: np.ndarray, y: np.ndarray, x_lat, x_lon, y_lat, y_lon, train: slice, test: slice) -> float:
    """RMSE on ``test`` of a per-fine-cell least-squares fit ``y = a + b x[nearest coarse cell]`` on ``train``."""
    iy = np.abs(y_lat.reshape(-1)[:, None] - x_lat[None]).argmin(1)
    ix = np.abs(y_lon.reshape(-1)[:, None] - x_lon[None]).argmin(1)
    xs = x[:, iy, ix]  # (T, cells): the coarse value over each fine cell
    ys = y.reshape(y.shape[0], -1)
    xm, ym = xs[train].mean(0), ys[train].mean(0)
    b = ((xs[train] - xm) * (ys[train] - ym)).sum(0) / ((xs[train] - xm) ** 2).sum(0)
    a = ym - b * xm
    return float(np.sqrt(np.mean((a + b * xs[test] - ys[test]) ** 2)))


def test_hourly_pairing_reports_the_matched_steps_and_the_right_hour_wins(hourly, tmp_path):
    fine, coarse = hourly
    # predictors lack the first 5 hours: exactly the other 139 target hours are paired, each with its own hour
    part = _rewrite(_open(coarse).isel(time=slice(5, None)), tmp_path / "coarse_part.nc", "1hr", 1.0)
    p = build_pairs(_recipe(tmp_path, part, fine))
    stamps = time_values(_open(fine)["time"])
    assert p.frequency == "1hr" and p.matching == "exact time stamps, 1hr"
    assert p.matched_steps == DAYS * 24 - 5 == p.x.sizes["time"] == p.y.sizes["time"]
    assert list(time_values(p.time)) == list(stamps[5:])
    assert p.pairing == {"frequency": "1hr", "matching": "exact time stamps, 1hr", "matched_steps": DAYS * 24 - 5}
    assert any("paired 139 1hr steps by exact time stamps" in s for s in p.steps)
    # the predictor of each pair is the area mean of the target at the same hour (and of nothing else)
    np.testing.assert_allclose(p.x.values[:, 0], _open(coarse)["tas"].values[5:] + 273.15, rtol=1e-6)

    p = build_pairs(_recipe(tmp_path, coarse, fine))
    x, y = np.asarray(p.x.values[:, 0], np.float64), np.asarray(p.y.values[:, 0], np.float64)
    grid = (np.asarray(p.x["lat"].values), np.asarray(p.x["lon"].values), p.fine_grid.lat2d, p.fine_grid.lon2d)
    train, test = slice(0, 4 * 24), slice(4 * 24 + 6, None)
    right = _nearest_fit_rmse(x, y, *grid, train, test)
    shifted = _nearest_fit_rmse(np.roll(x, 6, axis=0), y, *grid, train, test)  # fed the hour 6 h before
    # the old calendar-day pairing: every hour of a day with the last predictor step of that day
    keys = date_keys(p.time)
    last = np.array([np.flatnonzero(keys == k).max() for k in keys])
    by_day = _nearest_fit_rmse(x[last], y, *grid, train, test)
    assert right < 1.5 and shifted > 2.5 * right and by_day > 2.5 * right


# ------------------------------------------------------------------------- (b) 6-hourly and daily


def test_six_hourly_pairs_on_exact_stamps(hourly, tmp_path):
    fine, coarse = hourly
    six = {
        name: _rewrite(_open(path).isel(time=slice(5, None, 6)), tmp_path / f"{name}_6hr.nc", "6hr", 6.0)
        for name, path in (("fine", fine), ("coarse", coarse))
    }
    p = build_pairs(_recipe(tmp_path, six["coarse"], six["fine"]))
    assert p.frequency == "6hr" and p.matching == "exact time stamps, 6hr" and p.matched_steps == DAYS * 4
    assert [t.hour for t in time_values(p.time)[:4]] == [5, 11, 17, 23]


def test_daily_stamps_at_00_and_12_pair_by_calendar_day(hourly, tmp_path):
    fine, coarse = hourly
    daily = {}
    for name, path, hours in (("fine", fine, 12), ("coarse", coarse, 0)):
        ds = _open(path).drop_vars("time_bnds")
        mean = ds.resample(time="1D").mean()  # labels at 00:00
        daily[name] = _rewrite(_shift(mean, hours=hours), tmp_path / f"{name}_day.nc", "day", 24.0)
    p = build_pairs(_recipe(tmp_path, daily["coarse"], daily["fine"]))
    assert p.frequency == "day" and p.matched_steps == DAYS
    assert p.matching == "calendar day, stamps 12:00 vs 00:00 within 1 day"
    assert [t.hour for t in time_values(p.time)] == [12] * DAYS  # the targets' stamps
    np.testing.assert_allclose(
        p.x.values[:, 0], _open(daily["coarse"])["tas"].values + 273.15, rtol=1e-6
    )  # day d with day d, not with its neighbour


# ------------------------------------------------------------------------- (c) mismatches: one line, file, stamps, fix


def test_hourly_predictors_with_daily_targets_are_refused(hourly, tmp_path):
    fine, coarse = hourly
    ds = _open(fine).drop_vars("time_bnds")
    daily = _rewrite(_shift(ds.resample(time="1D").mean(), hours=12), tmp_path / "tas_day.nc", "day", 24.0)
    with pytest.raises(CalendarError) as info:
        build_pairs(_recipe(tmp_path, coarse, daily))
    text = _one_line(info)
    assert coarse.name in text and "tas_day.nc" in text
    assert "hourly (1hr)" in text and "daily (day)" in text and "resample(time='1D')" in text


def test_a_30_minute_offset_is_refused(hourly, tmp_path):
    fine, coarse = hourly
    ds = _open(coarse)
    ds = _shift(ds, minutes=-30).drop_vars("time_bnds")  # stamps HH:00, the targets HH:30
    offset = _rewrite(ds, tmp_path / "tas_offset.nc", "1hr", 1.0)
    with pytest.raises(CalendarError) as info:
        build_pairs(_recipe(tmp_path, offset, fine))
    text = _one_line(info)
    assert "tas_offset.nc" in text and fine.name in text and "offset by 00:30" in text
    assert "1982-12-01 00:00" in text and "1982-12-01 00:30" in text


def test_duplicate_steps_are_refused(hourly, tmp_path):
    fine, coarse = hourly
    ds = _open(coarse)
    dup = _rewrite(ds.isel(time=[0, 1, 2, 3, 3, 4, 5, 6, 7]), tmp_path / "tas_dup.nc", "1hr", 1.0)
    with pytest.raises(DataError) as info:
        build_pairs(_recipe(tmp_path, dup, fine))
    text = _one_line(info)
    assert "tas_dup.nc" in text and "steps 3 and 4 are both at 1982-12-01 03:30" in text
    # daily data with two steps in one day (00:00 and 12:00 of 3 December)
    day = _shift(_open(fine).drop_vars("time_bnds").resample(time="1D").mean(), hours=12)
    extra = _shift(day.isel(time=[2]), hours=-12)
    two = xr.concat([day.isel(time=[0, 1]), extra, day.isel(time=slice(2, None))], "time")
    path = _rewrite(two, tmp_path / "tas_twice.nc", "day", None)
    cday = _shift(_open(coarse).drop_vars("time_bnds").resample(time="1D").mean(), hours=12)
    cpath = _rewrite(cday, tmp_path / "coarse_day.nc", "day", 24.0)
    with pytest.raises(CalendarError) as info:
        build_pairs(_recipe(tmp_path, cpath, path))
    text = _one_line(info)
    assert "tas_twice.nc" in text and "same day" in text and "1982-12-03 00:00" in text and "1982-12-03 12:00" in text


def test_a_frequency_attribute_that_disagrees_is_refused(hourly, tmp_path):
    fine, coarse = hourly
    wrong = _rewrite(_open(coarse).drop_vars("time_bnds"), tmp_path / "tas_says_day.nc", "day", 1.0)
    with pytest.raises(DataError) as info:
        build_pairs(_recipe(tmp_path, wrong, fine))
    text = _one_line(info)
    assert "tas_says_day.nc" in text and "frequency attribute says 'day'" in text and "1hr" in text


def test_apply_checks_the_bundles_frequency(hourly):
    fine, _ = hourly
    time = _open(fine)["time"]
    check_frequency(time, "1hr")
    with pytest.raises(DataError, match=r"inputs are hourly \(1hr\); the emulator downscales daily fields") as info:
        check_frequency(time, "day", file="in.nc")
    assert "resample(time='1D')" in _one_line(info) and "in.nc" in str(info.value)
    daily = xr.date_range("2001-01-01T12:00", periods=5, freq="D", calendar="noleap", use_cftime=True)
    with pytest.raises(DataError, match=r"inputs are daily \(day\); the emulator downscales hourly fields"):
        check_frequency(daily, "1hr")


def test_sub_daily_outputs_get_time_bounds_of_one_step():
    from downscale.apply.store import _subdaily_bounds

    hours = xr.date_range("2001-01-01T00:30", periods=4, freq="h", calendar="360_day", use_cftime=True).values
    bounds = _subdaily_bounds(hours)
    assert bounds is not None and bounds.shape == (4, 2)
    assert bounds[0, 0] == cftime.Datetime360Day(2001, 1, 1, 0, 0) and bounds[0, 1] == cftime.Datetime360Day(
        2001, 1, 1, 1, 0
    )
    days = xr.date_range("2001-01-01T12:00", periods=4, freq="D", calendar="360_day", use_cftime=True).values
    assert _subdaily_bounds(days) is None


def test_bundle_meta_frequency_defaults_to_day():
    from downscale.bundle.meta import BundleMeta

    assert BundleMeta.model_fields["frequency"].default == "day"
    assert BundleMeta.model_fields["pairing"].default is None


# ------------------------------------------------------------------------- (d) time_of_day forcing


@pytest.mark.parametrize("calendar", ["360_day", "standard"])
def test_time_of_day_forcing(calendar):
    day = 30 if calendar == "360_day" else 29  # 30 February (360_day), 29 February 2000 (standard)
    stamps = [
        cftime.datetime(2000, 2, day, h, m, calendar=calendar) for h, m in ((0, 0), (6, 0), (12, 0), (18, 0), (3, 30))
    ]
    f = compute_forcings(np.array(stamps, dtype=object), ["season", "time_of_day"])
    assert forcing_names(["season", "time_of_day"]) == [
        "season_cos",
        "season_sin",
        "time_of_day_cos",
        "time_of_day_sin",
    ]
    angle = 2 * np.pi * 3.5 / 24
    expected = [[1, 0], [0, 1], [-1, 0], [0, -1], [np.cos(angle), np.sin(angle)]]
    np.testing.assert_allclose(f[:, 2:], expected, atol=1e-6)
    assert np.allclose(f[:, :2], f[0, :2])  # season: one day of the year
    t64 = np.array(["2000-02-29T06:00", "2000-02-29T18:00"], dtype="datetime64[ns]")
    np.testing.assert_allclose(compute_forcings(t64, ["time_of_day"]), [[0, 1], [0, -1]], atol=1e-6)


def test_local_time_of_day_is_utc_shifted_by_the_domain_longitude():
    from downscale.data.forcings import domain_longitude
    from downscale.data.grids import Grid

    t64 = np.array(["2000-02-29T00:00", "2000-02-29T06:00"], dtype="datetime64[ns]")
    # 90 degrees east: local solar time is UTC + 6 h
    local = compute_forcings(t64, ["local_time_of_day"], longitude=90.0)
    np.testing.assert_allclose(local, [[0, 1], [-1, 0]], atol=1e-6)
    west = compute_forcings(t64, ["local_time_of_day"], longitude=-90.0)
    np.testing.assert_allclose(west, [[0, -1], [1, 0]], atol=1e-6)
    with pytest.raises(DataError, match="needs the domain's longitude"):
        compute_forcings(t64, ["local_time_of_day"])
    # the circular mean across the date line, not the arithmetic one (0)
    grid = Grid.rectilinear(lat=[0.0, 1.0], lon=[178.0, -178.0])
    assert abs(abs(domain_longitude(grid)) - 180.0) < 1e-6
    assert domain_longitude(Grid.rectilinear(lat=[40.0, 41.0], lon=[-8.0, -2.0])) == pytest.approx(-5.0, abs=0.01)


# ------------------------------------------------------------------------- (e) k-shot by whole days


def test_k_shot_days_keep_the_hours_of_a_day_together():
    time = xr.date_range("2001-01-01T00:30", periods=20 * 24, freq="h", calendar="noleap", use_cftime=True).values
    sel = select_shots(time, np.arange(time.size), ShotsSpec(days=5, validation=0.4, seed=3))
    keys = date_keys(time)
    train_days, val_days = set(keys[sel.train].tolist()), set(keys[sel.validation].tolist())
    assert len(train_days) == 3 and len(val_days) == 2 and not train_days & val_days
    assert sel.train.size == 3 * 24 and sel.validation.size == 2 * 24  # every hour of each chosen day
    assert len(sel.record["train_days"]) == 3 and len(sel.record["validation_days"]) == 2
    with pytest.raises(DataError, match="the training period has 20 days"):
        select_shots(time, np.arange(time.size), ShotsSpec(days=21))


# ------------------------------------------------------------------------- (f) periods with hours


def test_period_with_hours():
    time = xr.date_range("2001-01-01T00:00", periods=72, freq="h", calendar="360_day", use_cftime=True)
    da = xr.DataArray(np.arange(72), dims="time", coords={"time": time})
    out = select_period(da, Period(start="2001-01-01T06:00", end="2001-01-02T05:00"))
    assert out.sizes["time"] == 24 and out["time"].values[0].hour == 6 and out["time"].values[-1].hour == 5
    whole = select_period(da, Period(start="2001-01-02", end="2001-01-02"))  # date only: the whole day
    assert whole.sizes["time"] == 24 and int(whole.values[0]) == 24
    spec = PeriodSpec(start="2001-01-01T18:00", end="2001-01-03")
    assert select_period(da, spec.to_period()).sizes["time"] == 72 - 18
    assert "from 2001-01-01T18:00" in spec.describe()
    with pytest.raises(CalendarError, match="start is after end"):
        Period(start="2001-01-02T06:00", end="2001-01-02T05:00")
    with pytest.raises(CalendarError, match="not a time of day"):
        Period(start="2001-01-02T25:00")
    with pytest.raises(CalendarError, match="cannot parse the time of day"):
        Period(start="2001-01-02Tnoon")
    Period(start="2001-01-02T06:00", end="2001-01-02")  # same day: the end is its last minute


# ------------------------------------------------------------------------- a tiny hourly emulator, end to end


def test_hourly_training_records_the_frequency_and_apply_keeps_the_stamps(hourly, tmp_path):
    from downscale.emulator.runtime import load
    from downscale.train.run import train

    fine, coarse = hourly
    recipe = recipe_from_dict(
        {
            **_recipe(tmp_path, coarse, fine, forcings=("season", "time_of_day")).to_dict(),
            "model": {"type": "simple_cnn", "width": 8, "coarse_blocks": 1, "fine_blocks": 1},
            "train": {"epochs": 1, "batch_size": 16},
        },
        root=tmp_path,
    )
    train(recipe, tmp_path / "bundle", progress=False)
    emu = load(tmp_path / "bundle")
    assert emu.meta.frequency == "1hr"
    assert emu.meta.pairing == {"frequency": "1hr", "matching": "exact time stamps, 1hr", "matched_steps": DAYS * 24}
    assert emu.meta.forcing_names[-2:] == ["time_of_day_cos", "time_of_day_sin"]
    ds = _open(coarse).isel(time=slice(0, 30))
    out = emu.downscale(ds, chunk_days=12).load()
    assert list(time_values(out["time"])) == list(time_values(ds["time"]))  # the inputs' own stamps
    daily = _shift(ds.drop_vars("time_bnds").resample(time="1D").mean(), hours=12)
    with pytest.raises(DataError, match=r"inputs are daily \(day\); the emulator downscales hourly fields"):
        emu.downscale(daily)
