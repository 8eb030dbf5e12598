"""Sub-daily evaluation (issue 13) on hand-made analytic cases: the diurnal cycle (amplitude, phase, wrap-around),
hourly extremes, the mean daily maximum, lag-1 autocorrelation at the native step, daily aggregation in any
calendar, and sub-daily metrics skipped with a reason on daily data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from downscale.errors import RecipeError
from downscale.evaluate import diagnostics as D
from downscale.evaluate import indices as I
from downscale.evaluate import metric_registry as R
from downscale.skill import metrics as M

DAY = 86400.0


def hourly(days: int, calendar: str = "noleap", start: str = "2001-07-01") -> xr.CFTimeIndex:
    return xr.date_range(start, periods=24 * days, freq="h", calendar=calendar, use_cftime=True)


def field(values: np.ndarray, time, units: str = "K", name: str = "tas") -> xr.DataArray:
    ny, nx = values.shape[1:]
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": time, "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"units": units},
        name=name,
    )


def cycle(time, amplitude: float, peak: float, shape=(2, 3), level: float = 290.0, units: str = "K") -> xr.DataArray:
    """``level + amplitude cos(2π (h - peak) / 24)`` in every cell: max - min over whole hours is 2 amplitude
    (for a whole-hour peak), the maximum at hour ``peak``."""
    h = M.hour_of_day(time).astype(float)
    v = level + amplitude * np.cos(2 * np.pi * (h - peak) / 24.0)
    return field(np.broadcast_to(v[:, None, None], (len(h), *shape)).copy(), time, units)


# --------------------------------------------------------------------------- diurnal cycle
def test_hour_of_day_from_cftime_and_datetime64():
    t = hourly(2, "360_day")
    assert M.hour_of_day(t).tolist() == list(range(24)) * 2
    t64 = pd.date_range("2001-01-01T00:30", periods=48, freq="h").values
    assert M.hour_of_day(t64).tolist() == list(range(24)) * 2  # 00:30 counts as hour 0


@pytest.mark.parametrize("calendar", ["noleap", "360_day", "numpy"])
def test_known_sinusoid_gives_known_amplitude_bias_and_phase_error(calendar):
    t = pd.date_range("2001-07-01", periods=24 * 5, freq="h").values if calendar == "numpy" else hourly(5, calendar)
    truth = cycle(t, 3.0, 14)
    pred = cycle(t, 5.0, 16)
    ct = M.diurnal_cycle(truth)
    assert ct.dims == ("hour", "y", "x") and ct["hour"].values.tolist() == list(range(24))
    assert float(M.diurnal_amplitude(ct)[0, 0]) == pytest.approx(6.0)
    assert float(I.compute_index(truth, "diurnal_amplitude")[0, 0]) == pytest.approx(6.0)
    assert float(M.diurnal_phase(ct)[1, 2]) == 14.0
    assert float(M.diurnal_phase(ct, method="harmonic")[1, 2]) == pytest.approx(14.0)
    assert M.diurnal_amplitude_abs_bias(pred, truth) == pytest.approx(4.0)
    assert M.diurnal_phase_error(pred, truth) == pytest.approx(2.0)
    assert M.diurnal_phase_error(pred, truth, method="harmonic") == pytest.approx(2.0)
    assert M.diurnal_phase_error(truth, truth) == 0.0 and M.diurnal_amplitude_abs_bias(truth, truth) == 0.0


def test_phase_error_wraps_around_midnight():
    assert M.circular_hour_difference(23, 1) == 2.0 and M.circular_hour_difference(1, 23) == 2.0
    assert M.circular_hour_difference(0, 12) == 12.0
    t = hourly(3)
    assert M.diurnal_phase_error(cycle(t, 2.0, 1), cycle(t, 2.0, 23)) == pytest.approx(2.0)
    assert M.diurnal_phase_error(cycle(t, 2.0, 23), cycle(t, 2.0, 1), method="harmonic") == pytest.approx(2.0)


def test_cells_invalid_in_the_truth_at_any_step_drop_out():
    t = hourly(4)
    truth = cycle(t, 3.0, 14)
    pred = cycle(t, 3.0, 14)
    pred[:, 0, 0] = cycle(t, 9.0, 2)[:, 0, 0]  # a cell with a wrong cycle ...
    truth[5, 0, 0] = np.nan  # ... where the truth misses one step
    assert M.diurnal_amplitude_abs_bias(pred, truth) == 0.0
    assert M.diurnal_phase_error(pred, truth) == 0.0
    mask = np.ones((2, 3), bool)
    mask[1, 1] = False
    pred[:, 1, 1] += cycle(t, 1.0, 20)[:, 1, 1] - 290.0
    assert M.diurnal_amplitude_abs_bias(pred, truth, mask) == 0.0
    assert M.diurnal_amplitude_abs_bias(pred, truth) > 0.0


def test_regional_mean_diurnal_curve():
    t = hourly(2)
    truth = cycle(t, 3.0, 14)
    truth[:, 0, :] += 10.0  # the first row is 10 K warmer
    north = np.zeros((2, 3), bool)
    north[0] = True
    curve = D.diurnal_curve(truth, regions={"north": north, "south": ~north})
    assert curve.dims == ("region", "hour") and curve["region"].values.tolist() == ["north", "south"]
    assert float(curve.sel(region="north", hour=14)) == pytest.approx(303.0)
    assert float(curve.sel(region="south", hour=2)) == pytest.approx(287.0)
    assert float(D.diurnal_curve(truth).sel(region="domain", hour=14)) == pytest.approx(298.0)


def test_diurnal_curve_figure_is_a_png():
    from downscale.evaluate import figures as F

    t = hourly(2)
    png = F.diurnal_curves(cycle(t, 3.0, 14), {"emulator": cycle(t, 4.0, 15)}, "tas: mean diurnal cycle")
    assert png[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- hourly extremes
def test_p999_of_a_known_sample_and_the_daily_maximum():
    n = 1001
    t = xr.date_range("2001-01-01", periods=n, freq="h", calendar="noleap", use_cftime=True)
    ramp = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], (n, 2, 2)).copy()
    truth, pred = field(ramp, t), field(ramp + 2.5, t)
    assert float(I.quantile(truth, q=0.999)[0, 0]) == pytest.approx(999.0)  # linear: 0.999 * 1000
    assert D.p999_abs_bias(pred, truth) == pytest.approx(2.5)
    assert D.p999_abs_bias(field(2 * ramp, t), truth) == pytest.approx(999.0)
    # the mean daily maximum: truth peaks at level + 3, pred at level + 5
    t = hourly(6)
    truth, pred = cycle(t, 3.0, 14), cycle(t, 5.0, 16)
    assert float(I.daily_max(truth)[0, 0]) == pytest.approx(293.0)
    assert D.daily_max_bias(pred, truth) == pytest.approx(2.0)
    assert R.create_metric("daily_max_bias")(pred, truth) == pytest.approx(2.0)


# --------------------------------------------------------------------------- lag-1 autocorrelation
def test_lag1_autocorrelation_at_the_native_step():
    t = hourly(20)
    h = np.arange(len(t), dtype=float)
    da = field(np.broadcast_to(np.cos(2 * np.pi * h / 24)[:, None, None], (len(t), 1, 2)).copy(), t)
    r = I.lag1_autocorrelation(da)
    assert float(r[0, 0]) == pytest.approx(np.cos(2 * np.pi / 24), abs=2e-3)
    # a gap (the second half a week later) breaks no pair into a false one
    later = hourly(10, start="2001-08-01")
    both = xr.concat([da.isel(time=slice(0, 240)), da.isel(time=slice(0, 240)).assign_coords(time=later)], "time")
    assert float(I.lag1_autocorrelation(both)[0, 1]) == pytest.approx(np.cos(2 * np.pi / 24), abs=2e-3)
    # daily data: day to next day, as before
    days = xr.date_range("2001-01-01", periods=200, calendar="noleap", use_cftime=True)
    rng = np.random.default_rng(0)
    x = np.zeros(200)
    for i in range(1, 200):
        x[i] = 0.9 * x[i - 1] + rng.standard_normal()
    daily = field(x[:, None, None].copy(), days)
    assert float(I.lag1_autocorrelation(daily)[0, 0]) == pytest.approx(np.corrcoef(x[:-1], x[1:])[0, 1])


# --------------------------------------------------------------------------- daily aggregation
def test_to_daily_groups_by_calendar_day_in_a_360_day_calendar():
    t = xr.date_range("2000-02-29", periods=24 * 3, freq="h", calendar="360_day", use_cftime=True)
    values = np.repeat([1.0, 2.0, 3.0], 24)[:, None, None] + np.tile(np.arange(24.0), 3)[:, None, None] / 23.0
    da = field(np.broadcast_to(values, (72, 2, 2)).copy(), t)
    daily = I.to_daily(da)
    assert [(d.month, d.day, d.hour) for d in daily.indexes["time"]] == [(2, 29, 0), (2, 30, 0), (3, 1, 0)]
    assert daily.values[:, 0, 0] == pytest.approx([1.5, 2.5, 3.5])
    assert I.to_daily(da, "max").values[:, 1, 1] == pytest.approx([2.0, 3.0, 4.0])
    assert daily.attrs["units"] == "K" and daily.attrs["frequency"] == "day" and daily.dims == da.dims
    # a day with a missing step is missing
    gappy = da.copy()
    gappy[30, 0, 0] = np.nan
    assert np.isnan(I.to_daily(gappy).values[1, 0, 0]) and I.to_daily(gappy).values[1, 0, 1] == pytest.approx(2.5)


def test_daily_precipitation_indices_read_daily_mean_rates_of_hourly_fluxes():
    t = hourly(4, "360_day")
    # hourly flux: 2 mm/day on day 1 (all of it in one hour), 0 on day 2, 48 mm/day spread on day 3, 0.5 day 4
    flux = np.zeros(96)
    flux[5] = 2.0 * 24 / DAY
    flux[48:72] = 48.0 / DAY
    flux[72:96] = 0.5 / DAY
    pr = field(np.broadcast_to(flux[:, None, None], (96, 1, 1)).copy(), t, "kg m-2 s-1", "pr")
    daily = I.to_daily(pr)
    assert daily.attrs["units"] == "kg m-2 s-1"
    assert daily.values[:, 0, 0] * DAY == pytest.approx([2.0, 0.0, 48.0, 0.5])
    assert float(I.compute_index(pr, "rx1day")[0, 0]) == pytest.approx(48.0)
    assert float(I.compute_index(pr, "wet_day_frequency")[0, 0]) == pytest.approx(50.0)
    assert float(I.compute_index(pr, "cdd")[0, 0]) == pytest.approx(1.0)
    # an amount per step is summed
    amount = pr.copy(data=pr.values * 3600.0).assign_attrs(units="kg m-2")
    assert I.to_daily(amount).values[:, 0, 0] == pytest.approx([2.0, 0.0, 48.0, 0.5])


def test_daily_option_scores_metrics_on_daily_aggregates():
    t = hourly(3)
    truth, pred = cycle(t, 3.0, 14), cycle(t, 5.0, 16) + 1.0
    call = R.create_metric({"type": "rmse", "daily": True})
    assert call.label == "rmse_daily" and call.daily
    assert call(pred, truth) == pytest.approx(M.rmse(I.to_daily(pred), I.to_daily(truth)))
    assert call(pred, truth) == pytest.approx(1.0, abs=1e-9)  # whole-day cosines average out
    rx = R.create_metric({"type": "index_bias", "index": "rx1day", "daily": True})
    assert rx.label == "rx1day_abs_bias_daily"
    with pytest.raises(RecipeError, match="cannot be scored on daily aggregates"):
        R.create_metric({"type": "diurnal_phase_error", "daily": True})


# --------------------------------------------------------------------------- registry and skipping
def test_subdaily_metrics_are_registered_and_skipped_on_daily_data_with_a_reason():
    for name in ("diurnal_amplitude_abs_bias", "diurnal_phase_error", "p999_abs_bias", "daily_max_bias"):
        assert name in R.metric_names() and R.get_metric(name).needs == "distribution"
    phase = R.create_metric("diurnal_phase_error")
    assert phase.frequency == "subdaily" and phase.units("K") == "h"
    assert (
        R.create_metric({"type": "diurnal_phase_error", "method": "harmonic"}).label
        == "diurnal_phase_error_methodharmonic"
    )
    assert R.create_metric("p999_abs_bias").frequency == "any"
    assert R.create_metric({"type": "index_bias", "index": "daily_max"}).frequency == "subdaily"
    assert R.create_metric({"type": "index_bias", "index": "rx1day"}).frequency == "daily"

    days = xr.date_range("2001-01-01", periods=30, calendar="360_day", use_cftime=True)
    daily = field(np.random.default_rng(0).random((30, 2, 2)), days)
    assert I.time_step(daily) == DAY and not I.is_subdaily(daily) and I.is_subdaily(cycle(hourly(2), 1.0, 3))
    reason = phase.skip_reason(I.time_step(daily))
    assert reason is not None and "sub-daily" in reason and "1 day" in reason
    assert phase.skip_reason(3600.0) is None and R.create_metric("rmse").skip_reason(DAY) is None
    index_reason = R.create_metric({"type": "index_bias", "index": "daily_max"}).skip_reason(DAY)
    assert index_reason is not None and "daily_max" in index_reason
    with pytest.raises(ValueError, match="needs sub-daily data"):
        M.diurnal_cycle(daily)
    assert np.isnan(I.compute_index(daily, "diurnal_amplitude").values).all()  # the index: NaN, not nonsense


def _predictions(truth: xr.DataArray, pred: xr.DataArray):
    from downscale.evaluate.cases import Predictions

    return Predictions(
        truth={"tas": truth}, estimate={"emulator": {"tas": pred}}, realisation={"emulator": {"tas": pred}}
    )


TEST = SimpleNamespace(name="t", label="T", kind="imperfect", domain="", period=SimpleNamespace(describe=lambda: "all"))


def test_runner_notes_skipped_metrics_and_draws_the_diurnal_figure(tmp_path):
    from downscale.evaluate.runner import _figures, _score

    calls = [R.create_metric(m) for m in ("diurnal_phase_error", "diurnal_amplitude_abs_bias", "p999_abs_bias")]
    days = xr.date_range("2001-01-01", periods=30, calendar="360_day", use_cftime=True)
    daily = field(np.random.default_rng(0).random((30, 2, 2)) + 280.0, days)
    notes: list[str] = []
    rows = _score(calls, "emu", TEST, _predictions(daily, daily + 1.0), None, {"tas": "K"}, notes)  # type: ignore[arg-type]
    assert [r["metric"] for r in rows] == ["p999_abs_bias"] and rows[0]["value"] == pytest.approx(1.0)
    assert len(notes) == 2 and all("skipped for tas" in n and "sub-daily" in n for n in notes)

    t = hourly(3)
    notes = []
    rows = _score(calls, "emu", TEST, _predictions(cycle(t, 3.0, 14), cycle(t, 5.0, 16)), None, {"tas": "K"}, notes)  # type: ignore[arg-type]
    values = {r["metric"]: r["value"] for r in rows}
    assert not notes and values["diurnal_phase_error"] == pytest.approx(2.0)
    assert values["diurnal_amplitude_abs_bias"] == pytest.approx(4.0)

    relief = xr.DataArray(np.arange(6.0).reshape(2, 3) ** 2, dims=("y", "x"))  # some spatial structure for the spectra
    truth, pred = (
        (cycle(t, 3.0, 14) + relief).assign_attrs(units="K"),
        (cycle(t, 5.0, 16) + relief).assign_attrs(units="K"),
    )
    made = _figures(_predictions(truth, pred), None, "emu", TEST, tmp_path)  # type: ignore[arg-type]
    kinds = {f["kind"]: f["path"] for f in made}
    assert kinds["diurnal_cycle"] == "figures/emu__t__tas__diurnal_cycle.png"
    assert (tmp_path / kinds["diurnal_cycle"]).read_bytes()[:4] == b"\x89PNG"
    made = _figures(_predictions(daily, daily + 1.0), None, "emu", TEST, tmp_path)  # type: ignore[arg-type]
    assert "diurnal_cycle" not in {f["kind"] for f in made}
