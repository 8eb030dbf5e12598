"""Issue 12, nothing absurd accepted: implausible values, bad time axes and common layouts where data enter
(``build_pairs`` of a tiny NCEP -> E-OBS recipe, and ``to_canonical``, which the API and apply chunks call)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import downscale
from downscale.data.pairing import build_pairs
from downscale.data.plausibility import PlausibilityWarning, check_plausible
from downscale.data.units import to_canonical
from downscale.errors import CalendarError, DataError
from downscale.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
NCEP = ROOT / "examples" / "data" / "iberia" / "ncep"
EOBS = ROOT / "examples" / "data" / "iberia" / "eobs"
TAS = NCEP / "tas_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc"
PR = NCEP / "pr_day_NCEP-NCAR-R1_T62_DJF1983-2002.nc"


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def _recipe(tmp: Path, tas: Path, pr: Path = PR, **data) -> Path:
    recipe = {
        "name": "faults",
        "framework": "emulator",
        "data": {
            "predictors": {"tas": str(tas), "pr": str(pr)},
            "targets": {"tas": str(EOBS / "tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc")},
            "coarse_grid": str(TAS),
            "periods": {
                "train": {"season": "DJF", "years": [1983, 1986]},
                "validation": {"season": "DJF", "years": [1986, 1986]},
                "test": {"season": "DJF", "years": [1999, 2000]},
            },
            **data,
        },
        "model": {"type": "simple_cnn", "width": 8, "coarse_blocks": 1, "fine_blocks": 1},
        "train": {"epochs": 1, "batch_size": 32, "seed": 0},
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_pairs(load_recipe(_recipe(tmp_path_factory.mktemp("ref"), TAS))).x.load()


def test_degc_labelled_k_is_refused_with_the_date_and_the_cause(tmp_path):
    ds = _load(TAS)
    ds["tas"].attrs["units"] = "K"
    path = tmp_path / "tas_degC_as_K.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError) as err:
        build_pairs(load_recipe(_recipe(tmp_path, path)))
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "variable 'tas'" in text
    assert "°C labelled 'K'?" in text and "1985-01-08 12:00" in text and "units: 'degC'" in text


def test_negative_precipitation_is_refused_warned_or_let_through(tmp_path):
    ds = _load(PR)
    ds["pr"][5, 2, 3] = -3e-5
    path = tmp_path / "pr_neg.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=r"negative precipitation.*") as err:
        build_pairs(load_recipe(_recipe(tmp_path, TAS, path)))
    assert "-2.592 mm/day" in str(err.value) and "1982-12-06 12:00" in str(err.value)
    assert "cell (2, 3) of (lat, lon)" in str(err.value)
    with pytest.warns(PlausibilityWarning, match="negative precipitation"):
        pairs = build_pairs(load_recipe(_recipe(tmp_path, TAS, path, plausibility="warn")))
    assert float(pairs.x.sel(channel="pr").isel(time=5).min()) < 0  # warn: the data go on unchanged
    with downscale.set_options(plausibility="off"), warnings.catch_warnings():
        warnings.simplefilter("error", PlausibilityWarning)
        build_pairs(load_recipe(_recipe(tmp_path, TAS, path)))
    with pytest.raises(DataError):  # the setting came back after the with block
        build_pairs(load_recipe(_recipe(tmp_path, TAS, path)))


def test_rounding_below_zero_is_set_to_zero_and_other_errors_name_the_cause():
    time = xr.date_range("2001-01-01", periods=3, freq="D", calendar="noleap", use_cftime=True)
    pr = xr.DataArray(np.full((3, 2, 2), 1e-5), dims=("time", "lat", "lon"), coords={"time": time})
    pr[1, 0, 0] = -1e-9  # ~ -1e-4 mm/day: rounding
    out = check_plausible(pr, "pr")
    assert float(out.min()) == 0.0 and float(out[1, 0, 1]) == 1e-5
    mm = (pr.clip(min=0) * 86400.0).assign_attrs(units="kg m-2 s-1")
    mm[2, 1, 1] = 40.0
    with pytest.raises(DataError, match=r"2001-01-03 00:00.*86400x too large: mm/day labelled 'kg m-2 s-1'\?"):
        to_canonical(mm, "pr", "f.nc")
    hus = xr.DataArray(np.full((3, 2, 2), 8.0), dims=("time", "lat", "lon"), coords={"time": time})
    with pytest.raises(DataError, match=r"g/kg labelled '1'"):
        to_canonical(hus.assign_attrs(units="1"), "huss", "h.nc")
    psl = xr.DataArray(np.full((3, 2, 2), 1013.0), dims=("time", "lat", "lon"), coords={"time": time})
    with pytest.raises(DataError, match=r"hPa labelled 'Pa'"):
        to_canonical(psl.assign_attrs(units="Pa"), "psl", "p.nc")
    assert to_canonical(psl.assign_attrs(units="hPa"), "psl")[0].attrs["units"] == "Pa"


def test_set_options_refuses_an_unknown_value():
    with pytest.raises(downscale.errors.UnknownNameError, match="plausibility setting 'loud'"):
        downscale.set_options(plausibility="loud")
    from downscale.data.options import get_option

    assert get_option("plausibility") == "raise"


def test_duplicate_and_backward_time_are_refused_with_both_stamps(tmp_path):
    ds = _load(TAS)
    dup = xr.concat([ds.isel(time=slice(0, 10)), ds.isel(time=[9]), ds.isel(time=slice(10, None))], "time")
    dup.to_netcdf(tmp_path / "dup.nc")
    with pytest.raises(CalendarError, match=r"steps 9 and 10 are both at 1982-12-10 12:00.*drop_duplicates"):
        build_pairs(load_recipe(_recipe(tmp_path, tmp_path / "dup.nc")))
    back = ds.isel(time=[*range(5), 6, 5, *range(7, ds.sizes["time"])])
    back.to_netcdf(tmp_path / "back.nc")
    with pytest.raises(CalendarError, match=r"time is not increasing: step 6 .* comes after step 5.*sortby"):
        build_pairs(load_recipe(_recipe(tmp_path, tmp_path / "back.nc")))
    # an in-memory dataset (the API's path) is checked where it is converted
    with pytest.raises(CalendarError, match="duplicate time stamp"):
        to_canonical(dup["tas"], "tas", "memory")


def test_overlapping_files_with_different_values_name_both_files(tmp_path):
    ds = _load(TAS)
    ds.isel(time=slice(0, 1000)).to_netcdf(tmp_path / "tas_a.nc")
    other = ds.isel(time=slice(900, None))
    other["tas"] = other["tas"] + 1.0
    other.to_netcdf(tmp_path / "tas_b.nc")
    with pytest.raises(CalendarError, match=r"in two files with different values.*tas_a.nc and tas_b.nc"):
        build_pairs(load_recipe(_recipe(tmp_path, tmp_path / "tas_*.nc")))


@pytest.mark.parametrize("layout", ["latitude", "height", "descending"])
def test_common_layouts_give_the_same_predictors(tmp_path, layout, reference):
    ds = _load(TAS)
    if layout == "latitude":
        ds = ds.rename({"lat": "latitude", "lon": "longitude"})
    elif layout == "height":
        ds["tas"] = ds["tas"].expand_dims(height=[2.0], axis=1)
    else:
        ds = ds.isel(lat=slice(None, None, -1))
    ds.to_netcdf(tmp_path / "tas.nc")
    x = build_pairs(load_recipe(_recipe(tmp_path, tmp_path / "tas.nc"))).x
    assert x.dims == reference.dims and x.shape == reference.shape
    np.testing.assert_allclose(x.values, reference.values, rtol=1e-6)
