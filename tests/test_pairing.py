"""Pairing for both frameworks, the normaliser and the sample datasets, on the real Iberia data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from downscale.data.dataset import BlockShuffleSampler, SampleDataset, materialise
from downscale.data.normalise import Normaliser
from downscale.data.pairing import build_pairs
from downscale.data.regrid import create_regridder
from downscale.errors import CalendarError, GridMismatchError
from downscale.models.losses import create_criterion
from downscale.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def emulator_pairs():
    recipe = load_recipe(ROOT / "recipes" / "emulator-iberia.yaml")
    return recipe, build_pairs(recipe)


@pytest.fixture(scope="module")
def perfect_pairs():
    recipe = load_recipe(ROOT / "recipes" / "perfect-model-iberia.yaml")
    return recipe, build_pairs(recipe)


def test_emulator_framework_pairs_ncep_with_eobs(emulator_pairs):
    _recipe, p = emulator_pairs
    assert p.x.dims == ("time", "channel", "lat", "lon") and p.x.shape == (1805, 5, 6, 8)
    assert p.y.shape == (1805, 2, 19, 29)
    assert p.predictors == ["tas", "pr", "psl", "ta850", "hus850"] and p.coarse_grid.shape == (6, 8)
    assert sum("bilinear regridding" in s for s in p.steps) == 3  # psl, ta850, hus850 from 2.5 deg
    y = p.y.values
    # E-OBS sea is NaN: 221 cells always for tas, 223 for pr (SOURCE_README caveat 3)
    assert np.isnan(y[:, 0]).all(axis=0).sum() == 221
    assert np.isnan(y[:, 1]).all(axis=0).sum() == 223
    # E-OBS daily sums in mm became kg m-2 s-1
    assert 1.0 < np.nanmean(y[:, 1]) * 86400 < 4.0
    conv = {(c["variable"], c["from_units"], c["to_units"]) for c in p.conversions}
    assert ("pr", "mm", "kg m-2 s-1") in conv and ("tas", "degC", "K") in conv


def test_perfect_model_predictors_are_area_means_of_the_targets(perfect_pairs):
    _recipe, p = perfect_pairs
    assert p.x.shape == (1805, 2, 8, 11) and p.y.shape == (1805, 2, 28, 30)
    up = create_regridder(p.fine_grid, p.coarse_grid, "area_mean")
    np.testing.assert_allclose(up(p.y.isel(time=slice(0, 5))).values, p.x.isel(time=slice(0, 5)).values, rtol=1e-6)
    assert p.static_names == ["orog"] and p.static.shape == (1, 28, 30)
    assert np.isfinite(p.x.values).all()


def test_periods_split_train_validation_test(perfect_pairs):
    recipe, p = perfect_pairs
    periods = recipe.data.periods
    train = p.indices(periods.train, exclude=periods.validation)
    val, test = p.indices(periods.validation), p.indices(periods.test)
    assert (len(train), len(val), len(test)) == (1173, 181, 451)
    assert not set(train) & set(val) and not set(train) & set(test)


def test_normaliser_uses_training_period_only(perfect_pairs):
    recipe, p = perfect_pairs
    train = p.indices(recipe.data.periods.train)
    norm = Normaliser.fit(p.x.isel(time=train), p.y.isel(time=train), p.static)
    tas = p.y.sel(channel="tas").isel(time=train).values
    assert norm.targets["tas"].mean == pytest.approx(float(tas.mean()), rel=1e-5)
    assert norm.targets["tas"].std == pytest.approx(float(tas.std()), rel=1e-4)
    # the test winters are warmer: fitting on everything would give another mean
    every = float(p.y.sel(channel="tas").values.mean())
    assert abs(every - norm.targets["tas"].mean) > 1e-3
    assert norm.targets["pr"].transform == "scale" and norm.predictors["tas"].transform == "standard"
    back = Normaliser.from_dict(norm.to_dict())
    x = np.asarray(p.x.isel(time=[0, 1]).values)
    np.testing.assert_allclose(
        back.normalise("predictors", x, p.predictors, axis=1), norm.normalise("predictors", x, p.predictors, axis=1)
    )
    y = np.asarray(p.y.isel(time=[0]).values)
    np.testing.assert_allclose(
        norm.denormalise("targets", norm.normalise("targets", y, p.targets, axis=1), p.targets, axis=1), y, rtol=1e-5
    )


def test_zarr_cache_streams_the_same_samples(emulator_pairs, tmp_path):
    recipe, p = emulator_pairs
    idx = p.indices(recipe.data.periods.test)
    norm = Normaliser.fit(p.x.isel(time=idx), p.y.isel(time=idx))
    mem = materialise(p, norm, idx)
    disk = materialise(p, norm, idx, cache=tmp_path, name="test")
    assert mem.in_memory and not disk.in_memory and (tmp_path / "test.zarr").is_dir()
    a, b = SampleDataset(mem), SampleDataset(disk)
    batch = [5, 300, 7, 7]
    for sa, sb in zip(a.__getitems__(batch), b.__getitems__(batch), strict=True):
        for key in "xfsym":
            assert torch.equal(sa[key], sb[key])
    s = a[3]
    assert s["x"].shape == (5, 6, 8) and s["f"].shape == (2,) and s["s"].shape == (0, 19, 29)
    assert s["y"].shape == s["m"].shape == (2, 19, 29) and s["m"].dtype == torch.bool
    assert int((~s["m"][0]).sum()) == 221 and float(s["y"][~s["m"]].abs().sum()) == 0.0
    # a data set too large for memory must be given a cache folder
    with pytest.raises(Exception, match="data.cache"):
        materialise(p, norm, idx, max_memory=1)


def test_block_sampler_is_a_seeded_permutation():
    s = BlockShuffleSampler(1000, block=256, seed=3)
    s.set_epoch(1)
    first = list(s)
    assert sorted(first) == list(range(1000)) and first != list(range(1000))
    assert first == list(s)
    s.set_epoch(2)
    assert list(s) != first


def test_masked_loss_ignores_invalid_cells():
    loss = create_criterion("mse", ["tas", "pr"], {"pr": "mae"})
    y = torch.zeros(2, 2, 4, 4)
    m = torch.ones(2, 2, 4, 4, dtype=torch.bool)
    pred = torch.zeros(2, 2, 4, 4)
    pred[:, :, 0, 0] = 1000.0  # garbage on a masked cell
    m[:, :, 0, 0] = False
    assert float(loss(pred, y, m)) == 0.0
    m[:, :, 0, 0] = True
    pred[:, :, 0, 0] = 0.0
    pred[:, 1] += 2.0  # MAE 2 on pr, MSE 0 on tas
    assert float(loss(pred, y, m)) == pytest.approx((0.0 + 2.0) / 2)


def test_static_field_on_another_grid_is_refused(tmp_path):
    text = (ROOT / "recipes" / "perfect-model-iberia.yaml").read_text().replace("../examples", str(ROOT / "examples"))
    text = text.replace(
        "orog_EUR-44_Iberia-subset_derived-from-HSURF-0.11deg_fx.nc", "../../grids/orog_HSURF_0.44deg_fx.nc"
    )
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(
        GridMismatchError, match="orog_HSURF_0.44deg_fx.nc.*variable 'orog'.*not on the static field grid"
    ):
        build_pairs(load_recipe(path))


def test_calendar_mismatch_between_predictors_and_targets(tmp_path):
    import xarray as xr

    src = ROOT / "examples/data/iberia/ncep/psl_day_NCEP-NCAR-R1_2.5deg_DJF1983-2002.nc"
    ds = xr.open_dataset(src, decode_times=False)
    ds["time"].attrs["calendar"] = "noleap"
    ds.to_netcdf(tmp_path / src.name)
    text = (ROOT / "recipes" / "emulator-iberia.yaml").read_text().replace("../examples", str(ROOT / "examples"))
    text = text.replace(str(src), str(tmp_path / src.name))
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(CalendarError, match="calendars differ"):
        build_pairs(load_recipe(path))
