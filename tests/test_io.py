"""Opening inputs: patterns, lazy datasets, variable lookup, concatenation (downscale.data.io)."""

from __future__ import annotations

from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

from downscale.data.io import (
    check_finite,
    expand_inputs,
    find_variable,
    infer_frequency,
    open_dataset,
    open_variable,
)
from downscale.errors import CalendarError, DataError, MissingVariableError, UnitsError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "iberia"
RACMO_TAS = DATA / "cordex" / "tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
CNRM_TA850 = DATA / "cmip5" / "ta850_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
CNRM_TAS = DATA / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
EOBS_TAS = DATA / "eobs" / "tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"


def _grid_ds(
    variables: dict[str, tuple[str, dict]],
    calendar: str = "standard",
    ntime: int = 6,
    plev: list[float] | None = None,
    plev_units: str = "hPa",
    seed: int = 0,
) -> xr.Dataset:
    """Small synthetic dataset: each variable (name -> (units, extra attrs)) on (time, [plev,] lat, lon)."""
    rng = np.random.default_rng(seed)
    time = xr.date_range("2001-01-01", periods=ntime, freq="D", calendar=calendar, use_cftime=True)
    coords: dict = {"time": time, "lat": [40.0, 41.0, 42.0], "lon": [-5.0, -4.0]}
    dims: tuple[str, ...] = ("time", "lat", "lon")
    if plev is not None:
        coords["plev"] = ("plev", np.asarray(plev, float), {"units": plev_units, "standard_name": "air_pressure"})
        dims = ("time", "plev", "lat", "lon")
    data_vars = {}
    for name, (units, attrs) in variables.items():
        shape = tuple(len(coords[d]) if d != "plev" else len(plev) for d in dims)
        values = rng.normal(280.0, 5.0, size=shape).astype(np.float32)
        data_vars[name] = (dims, values, {"units": units, **attrs})
    return xr.Dataset(data_vars, coords=coords, attrs={"frequency": "day"})


# ---------------------------------------------------------------- expand_inputs / open_dataset


def test_expand_inputs_file_glob_dir(tmp_path):
    for name in ("b.nc", "a.nc", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.nc").write_bytes(b"x")
    assert expand_inputs([tmp_path / "a.nc"]) == [tmp_path / "a.nc"]
    assert expand_inputs([str(tmp_path / "*.nc")]) == [tmp_path / "a.nc", tmp_path / "b.nc"]
    assert expand_inputs([tmp_path]) == [tmp_path / "a.nc", tmp_path / "b.nc"]  # *.nc only, not recursive
    assert expand_inputs([str(tmp_path / "**" / "*.nc")])[-1] == tmp_path / "sub" / "c.nc"
    # duplicates across patterns collapse
    both = [tmp_path / "a.nc", tmp_path / "b.nc"]
    assert expand_inputs([tmp_path / "b.nc", str(tmp_path / "*.nc"), tmp_path]) == both
    assert expand_inputs(str(tmp_path / "a.nc")) == [tmp_path / "a.nc"]


def test_expand_inputs_errors(tmp_path):
    with pytest.raises(DataError, match="no file matches the pattern") as info:
        expand_inputs([str(tmp_path / "*.zarr")])
    assert str(tmp_path / "*.zarr") in str(info.value) and "Fix:" in str(info.value)
    with pytest.raises(DataError, match="no such file or directory"):
        expand_inputs([tmp_path / "missing.nc"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.nc files"):
        expand_inputs([tmp_path / "empty"])


def test_corrupt_file_is_one_line_data_error(tmp_path):
    bad = tmp_path / "garbage.nc"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="not a readable NetCDF file") as info:
        open_dataset(bad)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "re-download it or remove it from the inputs" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_open_dataset_is_lazy_and_cftime():
    ds = open_dataset(RACMO_TAS)
    assert isinstance(ds["tas"].data, dask.array.Array)
    assert max(ds["tas"].chunks[0]) == 366
    assert type(ds.time.values[0]).__module__.startswith("cftime")
    assert ds.sizes["time"] == 1805


# ---------------------------------------------------------------- find_variable


def test_find_variable_real_files():
    tas = find_variable(open_dataset(RACMO_TAS), "tas")
    assert tas.name == "tas" and tas.shape == (1805, 28, 30)
    ta = find_variable(open_dataset(CNRM_TA850), "ta850")
    assert ta.name == "ta850" and "plev" not in ta.coords and ta.attrs["plev_hPa"] == 850
    by_sn = find_variable(open_dataset(EOBS_TAS), "air_temperature")
    assert by_sn.shape == (1805, 19, 29)
    with pytest.raises(MissingVariableError, match="no level 500 hPa") as info:
        find_variable(open_dataset(CNRM_TA850), "ta500", file=CNRM_TA850)
    assert "found levels 850 hPa" in str(info.value)


def test_find_variable_missing_lists_what_is_there():
    ds = open_dataset(CNRM_TAS)
    with pytest.raises(MissingVariableError) as info:
        find_variable(ds, "psl", file="tas.nc")
    msg = str(info.value)
    assert msg.startswith("tas.nc: no variable 'psl' (found tas, time_bnds)")
    assert msg.endswith("Fix: add a file holding psl to the inputs")


@pytest.mark.parametrize(("plev", "units"), [([850.0, 500.0], "hPa"), ([85000.0, 50000.0], "Pa")])
def test_find_variable_plev_dimension(plev, units):
    ds = _grid_ds({"ta": ("K", {"standard_name": "air_temperature"})}, plev=plev, plev_units=units)
    ta500 = find_variable(ds, "ta500")
    np.testing.assert_array_equal(ta500.values, ds["ta"].isel(plev=1).values)
    assert ta500.dims == ("time", "lat", "lon") and ta500.attrs["plev_hPa"] == 500
    assert "plev" not in ta500.coords
    with pytest.raises(MissingVariableError, match="no level 700 hPa") as info:
        find_variable(ds, "ta700", file="levels.nc")
    assert "found levels 850, 500 hPa" in str(info.value)
    # a surface variable is never taken from a pressure-level field by standard name
    with pytest.raises(MissingVariableError, match=r"found ta \(plev 850, 500 hPa\)"):
        find_variable(ds, "tas")


def test_find_variable_by_canonical_standard_name():
    ds = _grid_ds(
        {
            "tg": ("degC", {"standard_name": "air_temperature", "cell_methods": "time: mean"}),
            "tx": ("degC", {"standard_name": "air_temperature", "cell_methods": "time: maximum"}),
        }
    )
    assert find_variable(ds, "tas").attrs["cell_methods"] == "time: mean"
    assert find_variable(ds, "tasmax").attrs["cell_methods"] == "time: maximum"
    with pytest.raises(MissingVariableError, match="several variables could be 'air_temperature'"):
        find_variable(ds, "air_temperature")


# ---------------------------------------------------------------- open_variable


def test_open_variable_across_files_split_in_time(tmp_path):
    full = xr.open_dataset(RACMO_TAS, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    full.isel(time=slice(0, 1000)).to_netcdf(tmp_path / "part1.nc")
    full.isel(time=slice(900, None)).to_netcdf(tmp_path / "part2.nc")  # 100 duplicated days
    da, conversions = open_variable([tmp_path / "part2.nc", str(tmp_path / "part*.nc")], "tas")
    assert isinstance(da.data, dask.array.Array)
    assert da.sizes["time"] == 1805 and da.name == "tas"
    assert list(da.time.values) == list(full.time.values)  # sorted, duplicates dropped
    np.testing.assert_array_equal(da.values, full["tas"].values + np.float32(273.15))
    assert da.attrs["units"] == "K"
    assert da.attrs["source_files"] == [str(tmp_path / "part1.nc"), str(tmp_path / "part2.nc")]
    assert [c.from_units for c in conversions] == ["degC", "degC"]
    assert {c.file for c in conversions} == set(da.attrs["source_files"])
    full.close()


def test_open_variable_several_variables_in_one_file(tmp_path):
    ds = _grid_ds({"tas": ("degC", {}), "psl": ("hPa", {}), "pr": ("mm day-1", {})})
    ds.to_netcdf(tmp_path / "multi.nc")
    _grid_ds({"orog": ("m", {})}, seed=3).to_netcdf(tmp_path / "other.nc")  # lacks the three: skipped
    psl, conv = open_variable([tmp_path], "psl")
    np.testing.assert_allclose(psl.values, ds["psl"].values * 100.0, rtol=1e-6)
    assert psl.attrs["source_files"] == [str(tmp_path / "multi.nc")] and conv[0].to_units == "Pa"
    pr, _ = open_variable([tmp_path], "pr")
    np.testing.assert_allclose(pr.values, ds["pr"].values / 86400.0, rtol=1e-6)
    raw, conv = open_variable([tmp_path / "multi.nc"], "tas", canonical=False)
    assert raw.attrs["units"] == "degC" and conv == []
    with pytest.raises(MissingVariableError, match="no variable 'zg500' in any of the 2 files") as info:
        open_variable([tmp_path], "zg500")
    assert "found" in str(info.value) and "psl" in str(info.value)


def test_open_variable_real_level_name_and_calendar_mismatch(tmp_path):
    ta, conv = open_variable([DATA / "cmip5"], "ta850")
    assert ta.name == "ta850" and ta.sizes["time"] == 1805 + 1804 and conv == []
    assert len(ta.attrs["source_files"]) == 2
    _grid_ds({"tas": ("K", {})}, calendar="noleap").to_netcdf(tmp_path / "a.nc")
    _grid_ds({"tas": ("K", {})}, calendar="standard").assign_coords(
        time=xr.date_range("2002-01-01", periods=6, calendar="standard", use_cftime=True)
    ).to_netcdf(tmp_path / "b.nc")
    with pytest.raises(CalendarError, match="calendar standard differs from noleap"):
        open_variable([tmp_path], "tas")


def test_open_variable_units_must_agree_without_conversion(tmp_path):
    _grid_ds({"tas": ("K", {})}).to_netcdf(tmp_path / "a.nc")
    _grid_ds({"tas": ("degC", {})}).assign_coords(
        time=xr.date_range("2002-01-01", periods=6, calendar="standard", use_cftime=True)
    ).to_netcdf(tmp_path / "b.nc")
    with pytest.raises(UnitsError, match="units differ between files"):
        open_variable([tmp_path], "tas", canonical=False)
    da, conv = open_variable([tmp_path], "tas")
    assert da.sizes["time"] == 12 and len(conv) == 1 and conv[0].file == str(tmp_path / "b.nc")


# ---------------------------------------------------------------- check_finite / infer_frequency


def test_check_finite():
    tas = open_dataset(EOBS_TAS)["tas"]
    with pytest.raises(DataError, match="NaN/inf values where data must be valid") as info:
        check_finite(tas, "tas", file="eobs.nc")
    assert "1982-12-01" in str(info.value) and "eobs.nc" in str(info.value)
    valid = np.isfinite(tas).all("time").compute()  # land cells
    check_finite(tas, "tas", mask=valid)  # no error where the mask says valid
    ds = _grid_ds({"tas": ("K", {})})
    ds["tas"][3, 2, 1] = np.inf
    with pytest.raises(DataError, match=r"1 NaN/inf .*first on 2001-01-04 at cell \(2, 1\) of \(lat, lon\)"):
        check_finite(ds["tas"], "tas")
    check_finite(ds["tas"], "tas", mask=np.array([[True, True], [True, True], [True, False]]))


def test_infer_frequency():
    assert infer_frequency(open_dataset(RACMO_TAS)["time"]) == "day"  # DJF-only axis with gaps
    for freq, label in (("6h", "6hr"), ("MS", "mon"), ("h", "1hr"), ("YS", "yr")):
        time = xr.date_range("2001-01-01", periods=5, freq=freq, calendar="360_day", use_cftime=True)
        assert infer_frequency(time) == label
    with pytest.raises(DataError, match="fewer than two"):
        infer_frequency(xr.date_range("2001-01-01", periods=1, calendar="noleap", use_cftime=True))
