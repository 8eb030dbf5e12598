"""Climate indices (downscale.evaluate.indices) on analytic cases: known values, units, seasons, gaps, NaNs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from downscale.errors import UnitsError
from downscale.evaluate import indices as I

DAY = 86400.0


def winters(first: int, last: int) -> xr.CFTimeIndex:
    """Every DJF day of the season years ``first..last`` (standard calendar)."""
    t = xr.date_range(f"{first - 1}-12-01", f"{last}-02-28", calendar="standard", use_cftime=True)
    return t[(t.month == 12) | (t.month <= 2)]


def field(values: np.ndarray, time, units: str, name: str = "x") -> xr.DataArray:
    ny, nx = values.shape[1:]
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": time, "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"units": units},
        name=name,
    )


@pytest.fixture(scope="module")
def time2():
    return winters(2000, 2001)  # 91 + 90 days


def test_mean_quantile_and_season_years(time2):
    n = len(time2)
    v = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], (n, 2, 3)).copy()
    da = field(v, time2, "K")
    assert float(I.mean(da)[0, 0]) == pytest.approx((n - 1) / 2)
    assert float(I.quantile(da, q=0.5)[1, 2]) == pytest.approx(np.quantile(np.arange(n), 0.5))
    # December 1999 belongs to the DJF 2000 season year
    per_year = I.txx(da, season="DJF")
    assert list(per_year["year"].values) == [2000, 2001]
    assert per_year.values[:, 0, 0].tolist() == [90.0, float(n - 1)]
    assert I.txn(da, season="DJF").values[:, 0, 0].tolist() == [0.0, 91.0]
    # annual selection groups by calendar year instead: 1999 (Dec), 2000 (Jan, Feb, Dec), 2001 (Jan, Feb)
    assert list(I.txx(da, season="ANN")["year"].values) == [1999, 2000, 2001]
    # a season that is not in the data selects nothing
    with pytest.raises(Exception, match="selects no time steps"):
        I.mean(da, season="JJA")


def test_su_threshold_carries_its_units(time2):
    rng = np.random.default_rng(0)
    kelvin = field(290.0 + 15.0 * rng.random((len(time2), 3, 4)), time2, "K")
    celsius = (kelvin - 273.15).assign_attrs(units="degC")
    k = I.su(kelvin, thresh="25 degC")
    assert k.attrs["units"] == "days"
    np.testing.assert_array_equal(k.values, I.su(kelvin, thresh="298.15 K").values)
    np.testing.assert_array_equal(k.values, I.su(celsius, thresh="25 degC").values)
    np.testing.assert_array_equal(k.values, I.su(celsius, thresh="298.15 K").values)
    years = I.select_season(kelvin, "DJF")[1]
    direct = [np.sum(kelvin.values[years == y] > 298.15, axis=0) for y in (2000, 2001)]
    np.testing.assert_array_equal(k.values, np.stack(direct))
    with pytest.raises(UnitsError, match="has no units"):
        I.su(kelvin, thresh=25)
    with pytest.raises(UnitsError, match="cannot convert the threshold"):
        I.su(kelvin, thresh="25 mm")


def test_precipitation_indices_work_in_mm_per_day_whatever_the_input_units(time2):
    rng = np.random.default_rng(1)
    mm = rng.gamma(0.6, 4.0, (len(time2), 3, 4))
    mm[mm < 0.5] = 0.0
    per_day = field(mm, time2, "mm day-1", "pr")
    flux = field(mm / DAY, time2, "kg m-2 s-1", "pr").assign_attrs(standard_name="precipitation_flux")
    for name in ("rx1day", "sdii", "cdd", "cwd", "wet_day_frequency"):
        a = I.INDICES.get(name).func(per_day)
        b = I.INDICES.get(name).func(flux)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-10, err_msg=name)
    assert I.rx1day(flux).attrs["units"] == "mm day-1"
    np.testing.assert_allclose(I.rx1day(flux).values.max(axis=0), mm.max(axis=0), rtol=1e-12)
    # the wet-day threshold is in mm/day, or any rate units
    freq = I.wet_day_frequency(flux, thresh=1.0)
    np.testing.assert_allclose(freq.values, 100 * (mm >= 1.0).mean(axis=0))
    np.testing.assert_allclose(I.wet_day_frequency(flux, thresh="1 mm/day").values, freq.values)
    np.testing.assert_allclose(I.wet_day_frequency(flux, thresh=f"{1 / 24} mm/h").values, freq.values)
    wet = mm >= 1.0
    sdii = I.sdii(flux, thresh=1.0).values.mean(axis=0)
    assert I.sdii(flux).values.shape == (2, 3, 4)
    assert np.isfinite(sdii).all() and sdii.min() >= 1.0
    np.testing.assert_allclose(
        I.sdii(per_day, season="ANN").sel(year=1999).values, np.where(wet[:31], mm[:31], 0).sum(0) / wet[:31].sum(0)
    )
    with pytest.raises(UnitsError, match="precipitation"):
        I.rx1day(field(mm, time2, "K"))


def test_spells_are_counted_exactly_and_never_cross_a_date_gap(time2):
    n = len(time2)
    mm = np.full((n, 1, 2), 5.0)
    mm[10:17, 0, 0] = 0.0  # 7 dry days in winter 2000
    mm[85:91, 0, 1] = 0.0  # the last 6 days of winter 2000 ...
    mm[91:95, 0, 1] = 0.0  # ... and the first 4 of winter 2001 (December 2000): not one spell
    da = field(mm, time2, "mm day-1")
    cdd = I.cdd(da)
    assert cdd.values[:, 0, 0].tolist() == [7.0, 0.0]
    assert cdd.values[:, 0, 1].tolist() == [6.0, 4.0]
    # the same data as one calendar (ANN) series: Feb 2000 -> Dec 2000 is a gap of 9 months, still not a spell
    assert float(I.cdd(da, season="ANN").sel(year=2000)[0, 1]) == 6.0
    cwd = I.cwd(da)
    assert cwd.values[0, 0, 0] == 91.0 - 17.0  # winter 2000 has 91 days (leap February); days 17..90 are wet
    assert cwd.values[1, 0, 0] == 90.0


def test_lag1_autocorrelation_and_interannual_variability(time2):
    rng = np.random.default_rng(2)
    n = len(time2)
    ar = np.zeros((n, 8, 8))
    for i in range(1, n):
        ar[i] = 0.8 * ar[i - 1] + rng.standard_normal((8, 8))
    r = I.lag1_autocorrelation(field(ar, time2, "K"))
    assert r.attrs["units"] == "1"
    assert float(r.mean()) == pytest.approx(0.8, abs=0.06)
    alternating = np.broadcast_to(((-1.0) ** np.arange(n))[:, None, None], (n, 2, 2)).copy()
    assert np.allclose(I.lag1_autocorrelation(field(alternating, time2, "K")).values, -1.0)
    # seasonal means 1 and 3 in the two winters: interannual standard deviation sqrt(2)
    steps = np.where(np.arange(n) < 91, 1.0, 3.0)[:, None, None] * np.ones((n, 2, 2))
    np.testing.assert_allclose(I.interannual_variability(field(steps, time2, "K")).values, np.sqrt(2.0))


def test_missing_values_are_skipped_and_empty_cells_are_nan(time2):
    n = len(time2)
    v = np.ones((n, 2, 2))
    v[:, 0, 0] = np.nan  # never valid (a sea cell)
    v[::2, 1, 1] = np.nan  # every other day missing
    v[5, 1, 1] = 7.0
    da = field(v, time2, "mm day-1")
    for name in I.INDICES.names():
        if name == "su":
            continue
        out = I.climatology(I.INDICES.get(name).func(da))
        assert np.isnan(out.values[0, 0]), name
    assert float(I.rx1day(da).values[0, 1, 1]) == 7.0
    valid_days = np.isfinite(v[:, 1, 1]).sum()
    assert float(I.mean(da).values[1, 1]) == pytest.approx((valid_days - 1 + 7.0) / valid_days)
    assert float(I.wet_day_frequency(da).values[1, 1]) == 100.0
    assert float(I.cwd(da).values[0, 1, 1]) == 1.0  # NaN days break the wet spells


def test_compute_index_reports_bad_options(time2):
    da = field(np.ones((len(time2), 2, 2)), time2, "K")
    assert float(I.compute_index(da, "txx")[0, 0]) == 1.0
    with pytest.raises(Exception, match="unknown option"):
        I.compute_index(da, "txx", q=0.5)
    with pytest.raises(Exception, match="did you mean 'txx'"):
        I.compute_index(da, "txxx")
