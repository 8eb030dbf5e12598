"""Unit conversion to canonical units (downscale.data.units) and the variable table."""

from __future__ import annotations

from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

from downscale.data.io import open_dataset
from downscale.data.units import Conversion, check_units, convert_units, to_canonical
from downscale.data.variables import VARIABLES, get_spec, parse_level_name
from downscale.errors import UnitsError, UnknownNameError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "iberia"
RACMO_TAS = DATA / "cordex" / "tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
RACMO_PR = DATA / "cordex" / "pr_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
EOBS_PR = DATA / "eobs" / "pr_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"
NCEP_HUS = DATA / "ncep" / "hus850_day_NCEP-NCAR-R1_2.5deg_DJF1983-2002.nc"
CNRM_TAS = DATA / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"


def _synthetic(values: np.ndarray, units: str | None, freq: str = "D", calendar: str = "standard", **attrs):
    """A (time, y) DataArray with a cftime axis and the given attributes."""
    time = xr.date_range("2000-01-01", periods=values.shape[0], freq=freq, calendar=calendar, use_cftime=True)
    if units is not None:
        attrs["units"] = units
    return xr.DataArray(values, dims=("time", "y"), coords={"time": time}, attrs=attrs, name="x")


# ---------------------------------------------------------------- variables


def test_parse_level_name():
    assert parse_level_name("ta850") == ("ta", 850)
    assert parse_level_name("tas") == ("tas", None)
    assert parse_level_name("hus500") == ("hus", 500)
    assert parse_level_name("zg1000") == ("zg", 1000)
    assert parse_level_name("huss") == ("huss", None)


def test_get_spec():
    assert get_spec("ta850") is VARIABLES["ta"]
    assert get_spec("tas").units == "K"
    pr = get_spec("pr")
    assert (pr.units, pr.human_units, pr.standard_name) == ("kg m-2 s-1", "mm day-1", "precipitation_flux")
    assert pr.plausible[1] == pytest.approx(1000 / 86400)
    assert get_spec("psl").plausible == (85000.0, 110000.0)
    assert set(VARIABLES) >= {
        "tas",
        "tasmax",
        "tasmin",
        "pr",
        "psl",
        "ps",
        "ta",
        "hus",
        "huss",
        "zg",
        "ua",
        "va",
        "uas",
        "vas",
        "orog",
        "sftlf",
    }
    with pytest.raises(UnknownNameError, match="did you mean 'tas'"):
        get_spec("tass")


# ---------------------------------------------------------------- real files


def test_racmo_tas_degc_to_kelvin_exact_and_lazy():
    raw = open_dataset(RACMO_TAS)["tas"]
    out, conv = to_canonical(raw, "tas", file=RACMO_TAS)
    assert isinstance(out.data, dask.array.Array)  # still lazy
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.values, raw.values + np.float32(273.15))
    assert out.attrs["units"] == "K" and out.attrs["standard_name"] == "air_temperature"
    assert raw.attrs["units"] == "degC"  # input untouched
    assert conv == Conversion(str(RACMO_TAS), "tas", "degC", "K", conv.method)
    assert conv.to_dict()["from_units"] == "degC"
    assert float(out.mean()) == pytest.approx(float(raw.mean()) + 273.15, abs=1e-3)


def test_racmo_pr_mm_day_to_flux():
    raw = open_dataset(RACMO_PR)["pr"]
    out, conv = to_canonical(raw, "pr", file=RACMO_PR)
    assert isinstance(out.data, dask.array.Array)
    np.testing.assert_allclose(out.values, raw.values / 86400.0, rtol=1e-6)
    assert out.attrs["units"] == "kg m-2 s-1"
    assert out.attrs["standard_name"] == "precipitation_flux"
    assert out.attrs["original_units"] == "mm"  # kept from the file (climate4R's label)
    assert conv.from_units == "mm day-1" and "water density" in conv.method
    back = convert_units(out, "mm day-1")
    assert isinstance(back.data, dask.array.Array)
    np.testing.assert_allclose(back.values, raw.values, rtol=1e-5, atol=1e-6)
    assert back.attrs["units"] == "mm day-1" and back.attrs["standard_name"] == "lwe_precipitation_rate"


@pytest.mark.parametrize("source", ["time_bnds", "frequency", "inferred"])
def test_eobs_daily_sum_to_flux(source):
    ds = open_dataset(EOBS_PR)
    raw = ds["pr"]
    kwargs = {"time_bounds": ds["time_bnds"]} if source == "time_bnds" else {}
    if source == "frequency":
        kwargs["frequency"] = ds.attrs["frequency"]
    out, conv = to_canonical(raw, "pr", file=EOBS_PR, **kwargs)
    assert "86400 s" in conv.method and conv.from_units == "mm"
    values, expected = out.values, raw.values / 86400.0
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))  # sea stays NaN
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert out.attrs["cell_methods"] == "time: mean"
    assert out.attrs["standard_name"] == "precipitation_flux"


def test_ncep_hus_kg_per_kg_to_one():
    raw = open_dataset(NCEP_HUS)["hus"]
    out, conv = to_canonical(raw, "hus850")
    assert out.attrs["units"] == "1"
    assert conv is not None and conv.from_units == "kg kg-1" and conv.method.startswith("relabel")
    np.testing.assert_array_equal(out.values, raw.values)


def test_canonical_units_give_no_conversion():
    raw = open_dataset(CNRM_TAS)["tas"]
    out, conv = to_canonical(raw, "tas")
    assert conv is None and out.attrs["units"] == "K"
    assert check_units(raw, "tas") is None


# ---------------------------------------------------------------- synthetic


def test_hpa_to_pa():
    da = _synthetic(np.array([[1013.25, 990.0]] * 3), "hPa")
    out, conv = to_canonical(da, "psl")
    np.testing.assert_allclose(out.values[0], [101325.0, 99000.0])
    assert conv.to_units == "Pa"


def test_fraction_to_percent_and_kelvin_to_celsius():
    out, _ = to_canonical(_synthetic(np.array([[0.0, 0.25]]), "1"), "sftlf")
    np.testing.assert_allclose(out.values, [[0.0, 25.0]])
    back = convert_units(_synthetic(np.array([[273.15, 300.0]]), "K"), "degC")
    np.testing.assert_allclose(back.values, [[0.0, 26.85]], atol=1e-9)


def test_era5_metres_of_water_per_hour():
    da = _synthetic(np.full((4, 2), 0.001), "m", freq="h", standard_name="lwe_thickness_of_precipitation_amount")
    out, conv = to_canonical(da, "pr")  # no bounds, no frequency: the hourly step is inferred
    np.testing.assert_allclose(out.values, 1.0 / 3600.0)  # 1 mm in an hour = 1 kg m-2 per 3600 s
    assert "3600 s" in conv.method
    out2, _ = to_canonical(da, "pr", frequency="1hr")
    np.testing.assert_allclose(out2.values, 1.0 / 3600.0)


def test_monthly_amount_uses_bounds_per_month():
    time = xr.date_range("2001-01-01", periods=2, freq="MS", calendar="noleap", use_cftime=True)
    da = xr.DataArray(
        np.array([[31.0], [28.0]]),
        dims=("time", "y"),
        coords={"time": time},
        attrs={"units": "kg m-2", "cell_methods": "time: sum"},
    )
    ends = xr.date_range("2001-02-01", periods=2, freq="MS", calendar="noleap", use_cftime=True)
    bnds = xr.DataArray(np.stack([time.values, ends.values], axis=1), dims=("time", "bnds"))
    out, _ = to_canonical(da, "pr", time_bounds=bnds)
    np.testing.assert_allclose(out.values, 1.0 / 86400.0)  # 1 mm per day in both months
    out2, _ = to_canonical(da, "pr")  # inferred monthly step -> days in each month
    np.testing.assert_allclose(out2.values, 1.0 / 86400.0)


def test_amount_without_markers_is_ambiguous():
    with pytest.raises(UnitsError, match="amount, not a rate"):
        to_canonical(_synthetic(np.ones((3, 2)), "mm"), "pr", file="x.nc")


def test_unparseable_units():
    with pytest.raises(UnitsError, match="cannot parse units 'foo'") as info:
        to_canonical(_synthetic(np.ones((2, 2)), "foo"), "tas", file="bad.nc")
    msg = str(info.value)
    assert "\n" not in msg and "bad.nc" in msg and "'tas'" in msg


def test_incompatible_units():
    with pytest.raises(UnitsError, match="units 'm' cannot be converted to K") as info:
        to_canonical(_synthetic(np.ones((2, 2)), "m"), "tas", file="f.nc")
    assert "check that the file holds tas" in str(info.value)
    with pytest.raises(UnitsError, match="cannot be converted"):
        check_units(_synthetic(np.ones((2, 2)), "m"), "tas")
    with pytest.raises(UnitsError):
        convert_units(_synthetic(np.ones((2, 2)), "K"), "m s-1")


def test_missing_units():
    with pytest.raises(UnitsError, match="missing units attribute") as info:
        to_canonical(_synthetic(np.ones((2, 2)), None), "psl", file="p.nc")
    assert "p.nc" in str(info.value) and "'psl'" in str(info.value)


def test_dask_input_stays_lazy_for_offsets_and_per_step_factors():
    da = _synthetic(np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32), "degC").chunk({"time": 4})
    out, _ = to_canonical(da, "tas")
    assert isinstance(out.data, dask.array.Array) and out.chunks == da.chunks
    time = xr.date_range("2001-01-01", periods=3, freq="MS", calendar="360_day", use_cftime=True)
    monthly = xr.DataArray(
        np.ones((3, 2), np.float32),
        dims=("time", "y"),
        coords={"time": time},
        attrs={"units": "mm", "cell_methods": "time: sum"},
    ).chunk({"time": 1})
    out2, _ = to_canonical(monthly, "pr")
    assert isinstance(out2.data, dask.array.Array) and out2.dtype == np.float32
    np.testing.assert_allclose(out2.values, 1.0 / (30 * 86400.0), rtol=1e-6)  # 360_day months have 30 days
