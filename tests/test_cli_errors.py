"""Bad input gets one clean line naming the file, the variable and the fix -- never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import xarray as xr
from typer.testing import CliRunner

from downscale.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "perfect-model-iberia.yaml"


def fails(*args: str, match: list[str]) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for m in match:
        assert m in text, (m, text)
    return text


def _recipe(tmp_path: Path, old: str, new: str) -> Path:
    text = RECIPE.read_text()
    assert old in text
    path = tmp_path / "recipe.yaml"
    # keep data paths valid from the temporary folder
    text = text.replace("../examples", str(ROOT / "examples")).replace(old, new)
    path.write_text(text)
    return path


def test_empty_glob(tmp_path):
    path = _recipe(tmp_path, "tas_EUR-44_ICHEC-EC-EARTH_historical_*.nc", "tas_EUR-44_NOPE_*.nc")
    fails("train", path, "-o", tmp_path / "b", match=["tas_EUR-44_NOPE_*.nc", "no file matches", "Fix:"])


def test_calendar_period_that_does_not_exist(tmp_path):
    path = _recipe(
        tmp_path, "test: {season: DJF, years: [1998, 2002]}", 'test: {start: "1998-12-01", end: "1999-02-29"}'
    )
    fails("train", path, "-o", tmp_path / "b", match=["1999-02-29", "does not exist", "standard", "tas_EUR-44", "Fix:"])


def test_unknown_recipe_key(tmp_path):
    path = _recipe(tmp_path, "patience: 12", "patiense: 12")
    fails("train", path, "-o", tmp_path / "b", match=["recipe.yaml", "train.patiense", "did you mean 'patience'"])


def test_unknown_model(tmp_path):
    path = _recipe(tmp_path, "type: simple_cnn", "type: unet_smal")
    fails(
        "train",
        path,
        "-o",
        tmp_path / "b",
        match=["unknown model 'unet_smal'", "simple_cnn", "did you mean 'unet_small'"],
    )


def test_missing_variable_in_apply(tmp_path, tiny_bundle, iberia):
    only_tas = tmp_path / "in"
    only_tas.mkdir()
    shutil.copy(iberia / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc", only_tas)
    fails("apply", tiny_bundle, only_tas, "-o", tmp_path / "out", match=["'pr'", "tas_day_CNRM-CM5", "Fix:"])


def test_incompatible_units_in_apply(tmp_path, tiny_bundle, iberia):
    src = iberia / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
    ds = xr.open_dataset(src)
    ds["tas"].attrs["units"] = "m"
    bad = tmp_path / "in"
    bad.mkdir()
    ds.to_netcdf(bad / src.name)
    shutil.copy(iberia / "cmip5" / "pr_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc", bad)
    fails("apply", tiny_bundle, bad, "-o", tmp_path / "out", match=["variable 'tas'", "'m'", "K", src.name, "Fix:"])


def test_target_grid_mismatch(tmp_path, tiny_bundle, iberia):
    other = (
        ROOT / "examples" / "data" / "grids" / "tas_EUR-11_MPI-M-MPI-ESM-LR_rcp85_r1i1p1_KNMI-RACMO22E_v1_mon_209101.nc"
    )
    fails(
        "apply",
        tiny_bundle,
        iberia / "cmip5",
        "-o",
        tmp_path / "out",
        "--target-grid",
        other,
        match=["tas_EUR-11", "does not match", "rotated_pole 412x424", "rotated_pole 28x30", "Fix:"],
    )


def test_input_grid_not_covering_domain(tmp_path, tiny_bundle, iberia):
    bad = tmp_path / "in"
    bad.mkdir()
    for var in ("tas", "pr"):
        src = iberia / "cmip5" / f"{var}_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
        xr.open_dataset(src).isel(lat=slice(0, 4)).to_netcdf(bad / src.name)
    fails("apply", tiny_bundle, bad, "-o", tmp_path / "out", match=["does not cover", "variable 'tas'", "Fix:"])


def test_corrupt_netcdf(tmp_path, tiny_bundle):
    bad = tmp_path / "tas_day_broken.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    fails(
        "apply", tiny_bundle, bad, "-o", tmp_path / "out", match=["tas_day_broken.nc", "not a readable NetCDF", "Fix:"]
    )


def test_bundle_tampered(tmp_path, tiny_bundle, iberia):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "weights.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    fails("apply", copy, iberia / "cmip5", "-o", tmp_path / "out", match=["weights.safetensors", "modified", "Fix:"])


def test_output_folder_not_writable(tmp_path, tiny_bundle, iberia):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fails("apply", tiny_bundle, iberia / "cmip5", "-o", blocker / "out", match=["output folder", "Fix:"])


def test_nan_in_inputs_is_refused(tmp_path, tiny_bundle, iberia):
    bad = tmp_path / "in"
    bad.mkdir()
    src = iberia / "cmip5" / "pr_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
    ds = xr.open_dataset(src)
    ds["pr"][10, 2, 3] = float("nan")
    ds.to_netcdf(bad / src.name)
    shutil.copy(iberia / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc", bad)
    fails(
        "apply",
        tiny_bundle,
        bad,
        "-o",
        tmp_path / "out",
        match=["variable 'pr'", "NaN", "1982-12-11", "(2, 3)", "Fix:"],
    )
    assert not list((tmp_path / "out").glob("*.nc"))
