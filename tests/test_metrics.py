"""Skill metrics and baselines (downscale.evaluate): analytic cases, then the bundled Iberia data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import gaussian_filter

from downscale.data.grids import Grid
from downscale.skill import metrics as M
from downscale.skill.baselines import (
    BASELINES,
    BiasCorrectedBilinear,
    bilinear,
    correction_kind,
    create_baseline,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def field(values: np.ndarray, units: str = "K") -> xr.DataArray:
    t, ny, nx = values.shape
    return xr.DataArray(
        values,
        dims=("time", "y", "x"),
        coords={"time": np.arange(t), "y": np.arange(ny), "x": np.arange(nx)},
        attrs={"units": units},
    )


@pytest.fixture(scope="module")
def noise() -> xr.DataArray:
    return field(np.random.default_rng(0).standard_normal((200, 48, 48)))


@pytest.fixture(scope="module")
def rain() -> xr.DataArray:
    g = np.random.default_rng(1).gamma(0.6, 4.0, (120, 20, 24))
    g[g < 0.8] = 0.0
    return field(g, "mm day-1")


# --------------------------------------------------------------------------- identities
def test_identical_fields_score_zero(noise, rain):
    assert M.rmse(noise, noise) == 0.0
    assert M.bias(noise, noise) == 0.0
    assert M.p99_abs_bias(noise, noise) == 0.0
    assert M.wet_day_frequency_abs_bias(rain, rain) == 0.0
    assert M.ralsd(noise, noise) == 0.0
    assert M.ralsd(rain, rain) == 0.0
    assert M.climate_change_signal_error(noise, noise + 1.0, noise, noise + 1.0) == 0.0
    assert M.spatial_correlation(rain, rain) == pytest.approx(1.0)
    assert M.temporal_correlation(noise, noise) == pytest.approx(1.0)


def test_constant_shift_gives_known_rmse_and_p99_bias(noise):
    shifted = noise + 1.5
    assert M.rmse(shifted, noise) == pytest.approx(1.5)
    assert M.bias(shifted, noise) == pytest.approx(1.5)
    qb = M.quantile_bias(shifted, noise, 0.99)
    assert qb.dims == ("y", "x") and np.allclose(qb, 1.5)
    assert M.p99_abs_bias(shifted, noise) == pytest.approx(1.5)
    assert M.p99_abs_bias(noise - 0.5, noise) == pytest.approx(0.5)  # absolute value
    assert M.ralsd(shifted, noise) == pytest.approx(0.0, abs=1e-9)  # a shift only moves k = 0
    assert M.temporal_correlation(2.0 * noise + 3.0, noise) == pytest.approx(1.0)


def test_climate_change_signal_error_is_the_mean_absolute_signal_difference(noise):
    hist = noise.isel(time=slice(0, 100))
    fut = noise.isel(time=slice(100, 200)).assign_coords(time=hist.time)
    delta = M.climate_change_signal(hist, fut + 2.0)
    assert delta.dims == ("y", "x")
    assert M.climate_change_signal_error(hist, fut + 2.0, hist, fut + 3.0) == pytest.approx(1.0)
    assert M.climate_change_signal_error(hist, fut + 2.0, hist, fut + 1.0) == pytest.approx(1.0)


# --------------------------------------------------------------------------- spectra
def test_white_noise_has_a_flat_radial_psd(noise):
    psd = M.radial_psd(noise)
    assert psd.dims == ("wavenumber",) and int(psd.wavenumber[0]) == 1 and psd.size == 24  # k = 1 .. 48 // 2
    assert np.all(np.abs(psd.values - 1.0) < 0.15), psd.values  # unit variance -> power 1 at every k


def test_smoothing_lowers_high_wavenumbers_and_ralsd_sees_it(noise):
    smooth = noise.copy(data=gaussian_filter(noise.values, sigma=(0, 2, 2), mode="wrap"))
    psd_n, psd_s = M.radial_psd(noise).values, M.radial_psd(smooth).values
    assert psd_s[-5:].max() < 1e-3 * psd_n[-5:].min()
    assert psd_s[0] > 0.3 * psd_n[0]
    d = M.ralsd(smooth, noise)
    assert d > 10.0
    assert M.ralsd(smooth, noise, reduce="mean_spectrum") > 10.0


def test_ralsd_skips_only_steps_with_uniform_truth(rain):
    """METRICS.md step 5: a dry truth day is skipped; an all-dry *prediction* on a day when it rains is not."""
    dry_truth = rain.copy()
    dry_truth[0] = 0.0  # a day without rain anywhere
    rest = slice(1, None)
    assert M.ralsd(rain, dry_truth) == pytest.approx(M.ralsd(rain.isel(time=rest), dry_truth.isel(time=rest)))
    assert np.isnan(M.ralsd(dry_truth.isel(time=[0]), dry_truth.isel(time=[0])))
    dry_pred = rain.copy()
    dry_pred[0] = 0.0  # predicted dry while it rains
    assert M.ralsd(dry_pred, rain) > 40.0 / rain.sizes["time"]  # that day counts: ~50 dB over 120 days
    assert M.ralsd(dry_pred.isel(time=rest), rain.isel(time=rest)) == 0.0


def _ralsd_by_hand(pred: np.ndarray, truth: np.ndarray) -> float:
    """The METRICS.md recipe written out loop by loop, for one (y, x) step without invalid cells."""
    ny, nx = truth.shape
    size = max(ny, nx)

    def spectrum(a):
        power = np.abs(np.fft.fft2(a)) ** 2 / (ny * nx)
        sums, counts = {}, {}
        for i, fy in enumerate(np.fft.fftfreq(ny)):
            for j, fx in enumerate(np.fft.fftfreq(nx)):
                k = round(float(np.hypot(fy * size, fx * size)))
                if 1 <= k <= size // 2:
                    sums[k] = sums.get(k, 0.0) + power[i, j]
                    counts[k] = counts.get(k, 0) + 1
        return np.array([sums[k] / counts[k] for k in sorted(sums)])

    st, sp = spectrum(truth), spectrum(pred)
    floor = 1e-6 * st.mean()
    st, sp = np.maximum(st, floor), np.maximum(sp, floor)
    return float(np.sqrt(np.mean((10 * np.log10(st) - 10 * np.log10(sp)) ** 2)))


def test_ralsd_matches_the_reference_recipe_on_a_non_square_grid():
    rng = np.random.default_rng(3)
    truth = rng.standard_normal((1, 10, 16))
    pred = truth + 0.5 * rng.standard_normal((1, 10, 16))
    assert M.ralsd(pred, truth) == pytest.approx(_ralsd_by_hand(pred[0], truth[0]), rel=1e-10)
    # a uniform prediction: every bin at the floor, 1e-6 of the truth's mean power
    flat = np.full_like(truth, 0.3)
    assert M.ralsd(flat, truth) == pytest.approx(_ralsd_by_hand(flat[0], truth[0]), rel=1e-10)
    assert 50.0 < M.ralsd(flat, truth) < 70.0
    # the bins of a non-square grid follow the longer side: k = 1 .. 8, all holding coefficients
    assert M.radial_psd(truth).wavenumber.values.tolist() == list(range(1, 9))


def test_ralsd_fills_masked_cells_with_each_fields_valid_mean():
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((3, 12, 12))
    pred = truth + 0.3 * rng.standard_normal((3, 12, 12))
    sea = np.zeros((12, 12), bool)
    sea[:, :4] = True
    t_masked = truth.copy()
    t_masked[:, sea] = np.nan  # invalid at every step: filled, not scored
    p_garbage = pred.copy()
    p_garbage[:, sea] = 1e6  # whatever the prediction holds there is replaced by its own valid mean
    expected = []
    for i in range(3):
        t_f, p_f = truth[i].copy(), pred[i].copy()
        t_f[sea], p_f[sea] = truth[i][~sea].mean(), pred[i][~sea].mean()
        expected.append(_ralsd_by_hand(p_f, t_f))
    assert M.ralsd(p_garbage, t_masked) == pytest.approx(np.mean(expected), rel=1e-10)
    # a cell invalid on one step only is invalid for the whole period
    t_once = t_masked.copy()
    t_once[1, 5, 5] = np.nan
    assert M.ralsd(p_garbage, t_once) != pytest.approx(M.ralsd(p_garbage, t_masked), rel=1e-12)
    # a NaN of the prediction where the truth is valid is an error
    p_hole = pred.copy()
    p_hole[0, 6, 6] = np.nan
    with pytest.raises(ValueError, match="prediction is NaN at 1 cells"):
        M.ralsd(p_hole, truth)


# --------------------------------------------------------------------------- invalid cells
def test_nan_cells_are_ignored(noise, rain):
    truth = noise.copy()
    truth[:, :, :24] = np.nan  # half the domain invalid in the truth
    pred = noise.copy()
    pred[:, :, :24] = 99.0  # garbage where the truth is invalid
    for score in (M.rmse, M.bias, M.p99_abs_bias, M.ralsd):
        value = score(pred, truth)
        assert value == pytest.approx(0.0, abs=1e-9), score.__name__
    assert M.temporal_correlation(pred, truth) == pytest.approx(1.0)
    assert np.isfinite(M.radial_psd(truth)).all()
    wet_truth = rain.copy()
    wet_truth[:, :10] = np.nan
    wet_pred = rain.copy()
    wet_pred[:, :10] = 50.0
    assert M.wet_day_frequency_abs_bias(wet_pred, wet_truth) == 0.0
    freq = M.wet_day_frequency(wet_truth)
    assert np.isnan(freq[:10]).all() and np.isfinite(freq[10:]).all()


def test_mask_argument_removes_cells(noise):
    pred = noise.copy()
    pred[:, :, :24] += 5.0
    mask = np.zeros(noise.shape[1:], bool)
    mask[:, 24:] = True
    assert M.rmse(pred, noise, mask) == 0.0
    assert M.rmse(pred, noise) == pytest.approx(5.0 / np.sqrt(2.0))
    assert M.climate_change_signal_error(noise, pred, noise, noise, mask=mask) == 0.0


def test_wet_day_frequency_on_a_hand_made_series():
    series = np.array([0.0, 0.5, 1.0, 2.0, np.nan, 30.0])[:, None, None]
    freq = M.wet_day_frequency(field(series, "mm day-1"), threshold=1.0)
    assert float(freq[0, 0]) == pytest.approx(3 / 5)  # 1.0 counts as wet; the NaN day is left out
    pred = np.array([1.0, 1.0, 1.0, 2.0, 0.0, 30.0])[:, None, None]
    # jointly valid days: 5 (the NaN day drops out of both): pred 5/5 wet minus truth 3/5 = 40 pp
    assert M.wet_day_frequency_abs_bias(field(pred), field(series)) == pytest.approx(40.0)


def test_shape_mismatch_is_refused(noise):
    with pytest.raises(ValueError, match="shape"):
        M.rmse(noise.isel(x=slice(0, 10)), noise)


# --------------------------------------------------------------------------- baselines
@pytest.fixture(scope="module")
def grids() -> tuple[Grid, Grid]:
    coarse = Grid.rectilinear(np.arange(36.0, 46.0, 2.0), np.arange(-8.0, 4.0, 2.0))
    fine = Grid.rectilinear(np.arange(36.5, 44.0, 0.5), np.arange(-7.5, 2.0, 0.5))
    return coarse, fine


def _coarse(grid: Grid, values: np.ndarray, units: str) -> xr.DataArray:
    coords = {"time": np.arange(len(values)), "lat": grid.lat, "lon": grid.lon}
    return xr.DataArray(values, dims=("time", "lat", "lon"), coords=coords, attrs={"units": units})


def test_registry_and_correction_kinds():
    assert {"bilinear", "bilinear_bc"} <= set(BASELINES.names())
    assert correction_kind("kg m-2 s-1") == "multiplicative"
    assert correction_kind("mm day-1") == "multiplicative"
    assert correction_kind("K") == "additive"
    with pytest.raises(ValueError):
        BiasCorrectedBilinear(*(Grid.rectilinear([0.0, 1.0], [0.0, 1.0]),) * 2, kind="quantile")


def test_additive_correction_removes_a_known_offset_exactly(grids):
    cg, fg = grids
    rng = np.random.default_rng(2)
    coarse = _coarse(cg, 280.0 + 5.0 * rng.standard_normal((60, *cg.shape)), "K")
    offset = rng.normal(0.0, 2.0, fg.shape)
    truth = bilinear(coarse, cg, fg) + offset
    bc = create_baseline("bilinear_bc", cg, fg, kind=correction_kind("K")).fit(coarse[:40], truth[:40])
    np.testing.assert_allclose(bc.correction.values, offset, atol=1e-9)
    pred = bc.predict(coarse[40:])
    assert pred.dims == truth.dims and pred.shape == truth[40:].shape
    assert M.rmse(pred, truth[40:]) < 1e-9
    assert M.rmse(create_baseline("bilinear", cg, fg).fit(coarse, truth).predict(coarse[40:]), truth[40:]) > 1.0


def test_multiplicative_correction_removes_a_known_factor(grids):
    cg, fg = grids
    rng = np.random.default_rng(3)
    coarse = _coarse(cg, rng.gamma(0.8, 3e-5, (60, *cg.shape)), "kg m-2 s-1")
    factor = rng.uniform(0.5, 3.0, fg.shape)
    truth = bilinear(coarse, cg, fg) * factor
    bc = BiasCorrectedBilinear.for_units(cg, fg, "kg m-2 s-1").fit(coarse[:40], truth[:40])
    assert bc.kind == "multiplicative"
    np.testing.assert_allclose(bc.correction.values, factor, rtol=1e-9)
    pred = bc.predict(coarse[40:])
    np.testing.assert_allclose(pred.values, truth[40:].values, rtol=1e-9, atol=1e-20)
    assert float(pred.min()) >= 0.0


def test_multiplicative_correction_is_guarded_and_capped(grids):
    cg, fg = grids
    coarse = _coarse(cg, np.ones((10, *cg.shape)), "mm day-1")
    coarse[:, :2] = 0.0  # never rains in the south of the coarse field
    b = bilinear(coarse, cg, fg)
    truth = b * 100.0 + 1.0  # far wetter everywhere, also where the bilinear field is dry
    truth[:, -1, -1] = np.nan  # a cell with no valid target
    bc = BiasCorrectedBilinear(cg, fg, "multiplicative").fit(coarse, truth)
    corr = bc.correction.values
    dry = b.values.sum(axis=0) == 0.0
    assert dry.any() and np.all(corr[dry] == 1.0)
    assert np.nanmax(corr) == 20.0 and np.isnan(corr[-1, -1])
    pred = bc.predict(coarse)
    assert np.isfinite(pred.values).all()
    assert float(pred[0, -1, -1]) == float(b[0, -1, -1])  # no target -> left uncorrected


def test_predict_refuses_other_units(grids):
    cg, fg = grids
    coarse = _coarse(cg, np.full((5, *cg.shape), 280.0), "K")
    bc = BiasCorrectedBilinear(cg, fg).fit(coarse, bilinear(coarse, cg, fg))
    with pytest.raises(ValueError, match="units"):
        bc.predict(coarse.assign_attrs(units="degC"))


# --------------------------------------------------------------------------- the bundled Iberia data
HUMAN = {"tas": 1.0, "pr": 86400.0}  # K stays K; kg m-2 s-1 -> mm/day


def _baseline_scores(recipe: str) -> dict[str, dict[str, dict[str, float]]]:
    from downscale.data.pairing import build_pairs
    from downscale.data.variables import get_spec
    from downscale.recipe import load_recipe

    rec = load_recipe(RECIPES / recipe)
    paired = build_pairs(rec)
    train, test = paired.indices(rec.data.periods.train), paired.indices(rec.data.periods.test)
    assert len(test) == 451
    out: dict[str, dict[str, dict[str, float]]] = {}
    for v in paired.targets:
        units = get_spec(v).units
        coarse = paired.x.sel(channel=v).assign_attrs(units=units).load()
        target = paired.y.sel(channel=v).assign_attrs(units=units).load()
        truth = target.isel(time=test) * HUMAN[v]
        out[v] = {}
        for name in ("bilinear", "bilinear_bc"):
            model = create_baseline(name, paired.coarse_grid, paired.fine_grid, kind=correction_kind(units))
            model.fit(coarse.isel(time=train), target.isel(time=train))
            pred = model.predict(coarse.isel(time=test)) * HUMAN[v]
            out[v][name] = {
                "rmse": M.rmse(pred, truth),
                "p99": M.p99_abs_bias(pred, truth),
                "ralsd": M.ralsd(pred, truth),
                "wet": M.wet_day_frequency_abs_bias(pred, truth),
            }
    return out


def test_bias_corrected_bilinear_on_perfect_model_iberia():
    scores = _baseline_scores("perfect-model-iberia.yaml")
    tas, pr = scores["tas"], scores["pr"]
    assert 0.55 < tas["bilinear_bc"]["rmse"] < 0.70  # deep4downscaling's bilinear-BC: 0.618 K
    assert tas["bilinear_bc"]["rmse"] < tas["bilinear"]["rmse"]
    assert tas["bilinear_bc"]["p99"] == pytest.approx(0.397, abs=0.03)
    assert tas["bilinear_bc"]["ralsd"] == pytest.approx(0.624, abs=0.06)
    assert pr["bilinear_bc"]["rmse"] == pytest.approx(2.168, abs=0.05)
    assert pr["bilinear_bc"]["p99"] == pytest.approx(3.638, abs=0.1)
    assert pr["bilinear_bc"]["wet"] == pytest.approx(4.385, abs=0.1)
    assert pr["bilinear_bc"]["ralsd"] == pytest.approx(5.472, rel=0.05)


def test_baselines_on_ncep_to_eobs_ignore_the_sea():
    scores = _baseline_scores("emulator-iberia.yaml")
    for v in ("tas", "pr"):
        for name, s in scores[v].items():
            assert all(np.isfinite(x) for x in s.values()), (v, name, s)
    assert scores["tas"]["bilinear_bc"]["rmse"] < scores["tas"]["bilinear"]["rmse"]
    assert 1.6 < scores["tas"]["bilinear_bc"]["rmse"] < 2.2  # reference table: 1.835 K
    assert 3.0 < scores["pr"]["bilinear_bc"]["rmse"] < 4.0  # reference table: 3.372 mm/day
