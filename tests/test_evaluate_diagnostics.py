"""Diagnostics (downscale.evaluate.diagnostics) on analytic cases: identical fields give 0, a known shift gives
a known bias, white noise gives a flat spectrum, masks are honoured, ensemble scores have known values."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter

from downscale.evaluate import diagnostics as D
from downscale.skill import metrics as M


def winters(first: int, last: int):
    t = xr.date_range(f"{first - 1}-12-01", f"{last}-02-28", calendar="standard", use_cftime=True)
    return t[(t.month == 12) | (t.month <= 2)]


TIME = winters(2000, 2002)


def field(values: np.ndarray, units: str = "K", time=None) -> xr.DataArray:
    t, ny, nx = values.shape
    time = TIME[:t] if time is None else time
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": time, "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"units": units},
    )


@pytest.fixture(scope="module")
def tas() -> xr.DataArray:
    rng = np.random.default_rng(0)
    return field(280.0 + gaussian_filter(rng.standard_normal((len(TIME), 24, 32)), (1, 2, 2)) * 8.0)


@pytest.fixture(scope="module")
def pr() -> xr.DataArray:
    g = np.random.default_rng(1).gamma(0.6, 4.0, (len(TIME), 24, 32))
    g[g < 0.8] = 0.0
    return field(g, "mm day-1")


def test_identical_fields_give_zero(tas, pr):
    for index, da in (
        ("mean", tas),
        ("txx", tas),
        ("lag1_autocorrelation", tas),
        ("rx1day", pr),
        ("cdd", pr),
        ("wet_day_frequency", pr),
        ("interannual_variability", pr),
    ):
        assert D.index_bias(da, da, index) == 0.0, index
    assert D.index_ratio(pr, pr, "rx1day") == pytest.approx(1.0)
    assert D.spatial_correlation_of_index(tas, tas) == pytest.approx(1.0)
    assert D.wasserstein(tas, tas) == 0.0
    assert D.wasserstein(pr, pr, per_cell=True) == 0.0
    assert D.psd_distance(tas, tas) == 0.0
    assert D.pr_tas_correlation_bias({"pr": pr, "tas": tas}, {"pr": pr, "tas": tas}) == 0.0
    assert D.cc_signal_error(tas, tas + 2, tas, tas + 2) == pytest.approx(0.0, abs=1e-12)
    assert D.crps_ensemble(tas.expand_dims(member=3), tas) == 0.0


def test_a_known_shift_gives_a_known_bias(tas):
    shifted = tas + 1.5
    for index in ("mean", "txx", "txn", {"index": "quantile", "q": 0.99}):
        kw = index if isinstance(index, dict) else {"index": index}
        assert D.index_bias(shifted, tas, **kw) == pytest.approx(1.5), kw
    assert D.index_bias(shifted, tas, "interannual_variability") == pytest.approx(0.0, abs=1e-9)
    assert D.index_bias(shifted, tas, "su", thresh="7 degC") > 0  # more days above the threshold
    assert D.wasserstein(shifted, tas) == pytest.approx(1.5)
    assert D.wasserstein(shifted, tas, per_cell=True) == pytest.approx(1.5)
    # a doubled amount doubles the ratio
    assert D.index_ratio(tas * 2, tas, "mean") == pytest.approx(2.0)
    # the signal error of a shifted future is the shift, and equals metrics.climate_change_signal_error
    err = D.cc_signal_error(tas, tas + 3.0, tas, tas + 2.5)
    assert err == pytest.approx(0.5)
    assert err == pytest.approx(M.climate_change_signal_error(tas, tas + 3.0, tas, tas + 2.5))
    assert D.cc_signal_map(tas, tas + 3.0).values.mean() == pytest.approx(3.0)
    # a bias of +1 on half the cells and -1 on the other half: |bias| reduces to 1, not 0
    half = tas.copy(data=tas.values + np.where(np.arange(32) < 16, 1.0, -1.0))
    assert D.index_bias(half, tas) == pytest.approx(1.0)


def test_distributional_scores_need_no_day_matching(tas):
    rng = np.random.default_rng(3)
    other_days = tas.isel(time=rng.permutation(tas.sizes["time"])[:200])  # fewer days, shuffled
    assert D.wasserstein(other_days, tas) < 0.2
    assert D.index_bias(other_days, tas) < 0.5
    assert D.psd_distance(other_days, tas) < 0.5
    assert D.spatial_correlation_of_index(other_days, tas) > 0.9


def test_white_noise_has_a_flat_spectrum_and_smoothing_shows():
    rng = np.random.default_rng(4)
    white = field(rng.standard_normal((200, 48, 48)))
    spec = M.radial_psd(white).values
    assert spec.max() / spec.min() < 1.3  # flat
    assert spec.mean() == pytest.approx(1.0, rel=0.05)  # unit variance white noise: power 1 per coefficient
    other = field(rng.standard_normal((200, 48, 48)))
    assert D.psd_distance(other, white) < 0.2
    smooth = white.copy(data=gaussian_filter(white.values, (0, 2, 2)))
    assert D.psd_distance(smooth, white) > 5.0


def test_masks_and_nan_cells_are_honoured(tas, pr):
    sea = np.zeros(tas.shape[1:], bool)
    sea[:, :8] = True
    truth = tas.where(~sea)
    garbage = tas.copy(data=np.where(sea, 1e6, tas.values + 1.0))  # wild values only where the truth has none
    assert D.index_bias(garbage, truth) == pytest.approx(1.0)
    assert D.wasserstein(garbage, truth) == pytest.approx(1.0)
    assert D.index_bias_map(garbage, truth).isnull().values[sea].all()
    # a mask removes cells as NaN does
    assert D.index_bias(garbage, tas, mask=~sea) == pytest.approx(1.0)
    assert D.psd_distance(garbage, truth) == pytest.approx(D.psd_distance(tas + 1.0, truth), abs=1e-9)
    # NaN days inside a valid cell are skipped
    holes = pr.copy(data=np.where(np.random.default_rng(5).random(pr.shape) < 0.1, np.nan, pr.values))
    assert np.isfinite(D.index_bias(holes, pr, "rx1day"))
    assert D.pr_tas_correlation_bias({"pr": pr, "tas": tas}, {"pr": pr.where(~sea), "tas": truth}) == 0.0


def test_pr_tas_correlation_bias_sees_a_broken_coupling(tas, pr):
    coupled = {"tas": tas, "pr": pr.copy(data=np.maximum(tas.values - 280.0, 0.0))}
    broken = {"tas": tas, "pr": pr}
    value = D.pr_tas_correlation_bias(broken, coupled)
    assert 0.5 < value <= 2.0


def test_crps_and_rank_histogram_known_values():
    truth = np.zeros((4, 2, 3))
    ens = np.stack([-np.ones_like(truth), np.ones_like(truth)])  # members -1 and +1
    assert D.crps_ensemble(ens, truth) == pytest.approx(0.5)  # 1 - (1/2) * (4 / 4)
    assert D.crps_ensemble(ens, truth, fair=True) == pytest.approx(0.0)  # 1 - (1/2) * (4 / 2)
    one = D.crps_ensemble(ens[:1] + 0.25, truth)
    assert one == pytest.approx(0.75)  # a single member: the absolute error
    rng = np.random.default_rng(6)
    members = rng.standard_normal((9, 400, 4, 4))
    reliable = rng.standard_normal((400, 4, 4))
    hist = D.rank_histogram(members, reliable)
    assert hist.sizes["rank"] == 10 and hist.sum() == pytest.approx(1.0)
    assert D.rank_histogram_deviation(members, reliable) < 0.15
    above = D.rank_histogram(members, reliable + 100.0)
    assert float(above[-1]) == 1.0
    assert D.rank_histogram_deviation(members, reliable + 100.0) == pytest.approx(3.0)  # sqrt(((10-1)^2 + 9) / 10)
    # NaN truth cells drop out of both
    t = reliable.copy()
    t[:, 0, 0] = np.nan
    assert np.isfinite(D.crps_ensemble(members, t))
    # with a member dimension by name
    da = xr.DataArray(members, dims=("member", "time", "y", "x"))
    truth_da = xr.DataArray(reliable, dims=("time", "y", "x"))
    assert D.crps_ensemble(da, truth_da) == pytest.approx(D.crps_ensemble(members, reliable))


def test_quantile_mapping_baseline_maps_the_training_distribution():
    """The optional xsdba baseline: trained on a biased, too-narrow field, it restores the target's quantiles."""
    pytest.importorskip("xsdba")
    from downscale.data.grids import Grid
    from downscale.skill.baselines import QuantileMapping, create_baseline

    assert QuantileMapping.unavailable_reason() is None
    grid = Grid.rectilinear(np.arange(36.0, 40.0, 1.0), np.arange(-8.0, -4.0, 1.0))
    rng = np.random.default_rng(7)
    time = winters(2000, 2004)

    def on_grid(values, units="K"):
        return xr.DataArray(
            values,
            dims=("time", "lat", "lon"),
            coords={"time": time[: len(values)], "lat": grid.lat2d[:, 0], "lon": grid.lon2d[0]},
            attrs={"units": units},
        )

    truth = on_grid(280.0 + 3.0 * rng.standard_normal((len(time), 4, 4)))
    coarse = on_grid(275.0 + 0.5 * (truth.values - 280.0))  # 5 K too cold and half the spread
    qm = create_baseline("quantile_mapping", grid, grid, kind="additive").fit(coarse, truth)
    out = qm.predict(coarse)
    assert D.index_bias(out, truth, "mean") < 0.05
    assert D.index_bias(out, truth, "quantile", q=0.95) < 0.2
    assert D.index_bias(coarse, truth, "quantile", q=0.95) > 4.0
    # precipitation: many dry days and a coarse drizzle; the mapping stays defined (no NaN) and restores the
    # wet-day frequency and the mean
    wet = rng.gamma(0.5, 6.0, (len(time), 4, 4)) * (rng.random((len(time), 4, 4)) < 0.4)
    drizzle = on_grid(0.3 * wet + 0.2, "mm day-1")
    rain = on_grid(wet, "mm day-1")
    qm = create_baseline("quantile_mapping", grid, grid, kind="multiplicative").fit(drizzle, rain)
    out = qm.predict(drizzle)
    assert not out.isnull().any()
    assert D.index_bias(out, rain, "wet_day_frequency") < 2.0  # percentage points
    assert D.index_bias(out, rain, "mean") < 0.1
    assert D.index_bias(drizzle, rain, "wet_day_frequency") > 5.0
    assert D.index_bias(drizzle, rain, "mean") > 0.4


def test_per_cell_wasserstein_matches_scipy_cell_by_cell():
    """Different sample sizes (days need not match) and a cell with missing days, against scipy per cell."""
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(3)
    truth = rng.gamma(2.0, 3.0, (90, 3, 4))
    pred = rng.gamma(2.3, 2.8, (70, 3, 4))
    pred[5:9, 1, 2] = np.nan  # this cell has fewer predicted days
    expected = np.mean(
        [
            wasserstein_distance(pred[:, i, j][np.isfinite(pred[:, i, j])], truth[:, i, j])
            for i in range(3)
            for j in range(4)
        ]
    )
    got = D.wasserstein(field(pred, "mm day-1"), field(truth, "mm day-1"), per_cell=True)
    assert got == pytest.approx(expected, rel=1e-12)
