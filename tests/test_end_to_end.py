"""The real CLI on the bundled real data: train, regrid (RCMu), apply, and the Python API.

The emulator is trained once per session from ``recipes/perfect-model-iberia.yaml``
(RACMO22E tas and pr over Iberia, DJF 1983-1997) -- about two minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import downscale
from downscale.cli.main import app
from downscale.data.calendar import Period, select_period
from downscale.data.grids import Grid
from downscale.data.io import open_dataset, open_variable
from downscale.data.regrid import create_regridder
from downscale.skill.metrics import rmse

pytestmark = pytest.mark.slow
runner = CliRunner()
CNRM_TAS = "cmip5/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def upscaled(tmp_path_factory, iberia) -> Path:
    """RACMO historical tas and pr upscaled onto the CNRM-CM5 grid by `downscale regrid`."""
    out = tmp_path_factory.mktemp("rcmu")
    invoke("regrid", *sorted((iberia / "cordex").glob("*_historical_*.nc")), "--grid", iberia / CNRM_TAS, "-o", out)
    assert len(list(out.glob("*.nc"))) == 2
    return out


@pytest.fixture(scope="module")
def applied_rcmu(tmp_path_factory, trained_bundle, upscaled) -> Path:
    out = tmp_path_factory.mktemp("applied")
    invoke("apply", trained_bundle, upscaled, "-o", out)
    return out


def test_train_writes_a_complete_bundle(trained_bundle):
    names = {p.name for p in trained_bundle.iterdir()}
    assert {"bundle.json", "weights.safetensors", "arrays.safetensors", "MANIFEST.json", "training_log.csv"} <= names
    meta = json.loads((trained_bundle / "bundle.json").read_text())
    assert [t["name"] for t in meta["targets"]] == ["tas", "pr"]
    assert meta["targets"][1]["units"] == "kg m-2 s-1"
    assert meta["grids"]["fine"]["kind"] == "rotated_pole"
    assert meta["provenance"]["samples"] == {"train": 1173, "validation": 181}
    conversions = {(c["variable"], c["from_units"]) for c in meta["provenance"]["conversions"]}
    assert ("tas", "degC") in conversions and ("pr", "mm day-1") in conversions
    assert meta["normaliser"]["targets"]["pr"]["transform"] == "scale"


def _truth(iberia: Path, var: str) -> xr.DataArray:
    da, _ = open_variable(
        [iberia / "cordex" / f"{var}_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"], var
    )
    return select_period(da, Period(years=(1998, 2002), season="DJF")).load()


@pytest.mark.parametrize("var", ["tas", "pr"])
def test_apply_on_upscaled_test_winters_beats_bilinear(var, iberia, upscaled, applied_rcmu):
    truth = _truth(iberia, var)
    assert truth.sizes["time"] == 451
    (out_file,) = applied_rcmu.glob(f"{var}_*.nc")
    pred = select_period(open_dataset(out_file)[var], Period(years=(1998, 2002), season="DJF")).load()
    coarse, _ = open_variable(sorted(upscaled.glob(f"{var}_*.nc")), var)
    coarse = select_period(coarse, Period(years=(1998, 2002), season="DJF")).load()
    fine_grid = Grid.from_dataset(open_dataset(out_file))
    bilinear = create_regridder(Grid.from_dataset(coarse), fine_grid, "bilinear")(coarse)
    assert pred.shape == truth.shape == bilinear.shape == (451, 28, 30)
    scale = 86400.0 if var == "pr" else 1.0  # report pr in mm/day
    err_emulator = rmse(pred.values * scale, truth.values * scale)
    err_bilinear = rmse(bilinear.values * scale, truth.values * scale)
    assert err_emulator < err_bilinear, (var, err_emulator, err_bilinear)
    assert np.isfinite(pred.values).all()


def test_apply_real_gcm_writes_cf_files(tmp_path, trained_bundle, iberia):
    out = tmp_path / "cnrm"
    invoke("apply", trained_bundle, iberia / "cmip5", "-o", out)
    files = sorted(p.name for p in out.glob("*.nc"))
    assert len(files) == 4  # tas and pr, historical and rcp85
    assert all(f.split("_")[0] in ("tas", "pr") for f in files)
    assert sorted(p.name for p in out.glob(".*")) == [
        ".downscale-apply.log",
        ".downscale-output.json",
    ]  # no partial files, no work folder, no lock
    emu = downscale.load(trained_bundle)
    (hist_pr,) = out.glob("pr_EUR-44_CNRM-CM5_historical_r1i1p1_*.nc")
    ds = xr.open_dataset(hist_pr, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    pr = ds["pr"]
    assert pr.attrs["units"] == "kg m-2 s-1" and pr.attrs["standard_name"] == "precipitation_flux"
    assert pr.attrs["grid_mapping"] == "rotated_pole"
    assert ds["rotated_pole"].attrs["grid_mapping_name"] == "rotated_latitude_longitude"
    assert ds["lat"].dims == ("rlat", "rlon") and ds["lat"].attrs["units"] == "degrees_north"
    assert ds.attrs["Conventions"].startswith("CF-") and "downscale apply" in ds.attrs["history"]
    assert ds.attrs["downscale_bundle_id"] == emu.id
    assert ds.attrs["driving_model_id"] == "CNRM-CM5" and ds.attrs["driving_experiment_name"] == "historical"
    assert ds["time"].encoding["calendar"] == "standard" and ds.sizes["time"] == 1805
    assert (
        Grid.from_dataset(ds).id
        == Grid.from_dataset(open_dataset(next((iberia / "cordex").glob("tas_*historical*")))).id
    )
    assert float(pr.min()) >= 0.0 and np.isfinite(pr.values).all()
    (fut_tas,) = out.glob("tas_EUR-44_CNRM-CM5_rcp85_*.nc")
    (hist_tas,) = out.glob("tas_EUR-44_CNRM-CM5_historical_*.nc")
    warming = float(xr.open_dataset(fut_tas)["tas"].mean() - xr.open_dataset(hist_tas)["tas"].mean())
    assert 1.0 < warming < 8.0  # DJF warming over Iberia under RCP8.5, in K


def test_python_api_matches_cli_and_is_unit_agnostic(trained_bundle, iberia, tmp_path):
    emu = downscale.load(trained_bundle)
    assert "rotated_pole 28x30" in emu.describe() and "tas [K]" in emu.describe()
    ds = xr.merge(
        [open_dataset(iberia / CNRM_TAS)["tas"], open_dataset(iberia / CNRM_TAS.replace("tas", "pr"))["pr"]]
    ).isel(time=slice(0, 40))
    out = emu.downscale(ds)
    assert isinstance(out, xr.Dataset) and out["tas"].shape == (40, 28, 30)
    # the same fields in degC and mm/day give the same answer
    ds_c = ds.copy()
    ds_c["tas"] = (ds["tas"] - 273.15).assign_attrs(units="degC")
    ds_c["pr"] = (ds["pr"] * 86400.0).assign_attrs(units="mm day-1", standard_name="lwe_precipitation_rate")
    out_c = emu.downscale(ds_c)
    np.testing.assert_allclose(out_c["tas"].values, out["tas"].values, atol=1e-3)
    np.testing.assert_allclose(out_c["pr"].values, out["pr"].values, atol=1e-8)


def test_describe_verb(trained_bundle):
    result = invoke("describe", trained_bundle)
    assert "perfect-model-iberia" in result.output and "area_mean" not in result.output.split("predictors")[0]


def test_apply_one_file_with_several_variables_and_a_glob(tmp_path, trained_bundle, iberia):
    both = xr.merge(
        [xr.open_dataset(iberia / CNRM_TAS), xr.open_dataset(iberia / CNRM_TAS.replace("tas", "pr"))],
        combine_attrs="override",
        compat="override",
    ).isel(time=slice(0, 90))
    both.to_netcdf(tmp_path / "cnrm_tas_pr.nc")
    invoke("apply", trained_bundle, tmp_path / "cnrm_tas_pr.nc", "-o", tmp_path / "a")
    invoke("apply", trained_bundle, str(iberia / "cmip5" / "*_historical_*.nc"), "-o", tmp_path / "b")
    one = xr.open_dataset(next((tmp_path / "a").glob("tas_*.nc")))["tas"]
    many = xr.open_dataset(next((tmp_path / "b").glob("tas_*.nc")))["tas"].isel(time=slice(0, 90))
    assert one.shape == (90, 28, 30)
    np.testing.assert_allclose(one.values, many.values, atol=1e-4)


def test_console_script_is_installed():
    import subprocess

    result = subprocess.run(["downscale", "models"], capture_output=True, text=True, check=True)
    assert "simple_cnn" in result.stdout.split()
