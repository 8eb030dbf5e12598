"""One-line errors of the Python API (Emulator.downscale / predict / coarse_fields) instead of raw exceptions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import downscale
from downscale.errors import DataError

CMIP5 = "examples/data/iberia/cmip5/{}_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"


@pytest.fixture(scope="module")
def emu(tiny_bundle):
    return downscale.load(tiny_bundle)


@pytest.fixture(scope="module")
def coarse(root):
    tas = xr.open_dataset(root / CMIP5.format("tas")).isel(time=slice(0, 4)).load()
    pr = xr.open_dataset(root / CMIP5.format("pr")).isel(time=slice(0, 4)).load()
    return xr.merge([tas, pr], compat="override")


def one_line(exc: pytest.ExceptionInfo, *parts: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, DataError)
    for p in parts:
        assert p in text, text


@pytest.mark.parametrize(
    ("make", "parts"),
    [
        (lambda ds: ds["tas"].values, ["not an xarray Dataset", "ndarray", "Fix:"]),
        (lambda ds: None, ["not an xarray Dataset", "NoneType", "Fix:"]),
        (lambda ds: ds.isel(time=0, drop=True), ["no time coordinate", "variable 'tas'", "Fix:"]),
        (lambda ds: ds.isel(time=slice(0, 0)), ["no time steps", "Fix:"]),
        (lambda ds: ds.assign_coords(time=np.arange(ds.time.size)), ["does not hold dates", "int64", "Fix:"]),
        (lambda ds: xr.DataArray(np.zeros(3)), ["DataArray without a name", "Fix:"]),
        (lambda ds: ds["tas"], ["no variable 'pr'"]),  # a named DataArray is accepted as da.to_dataset()
    ],
    ids=["numpy", "none", "no-time", "zero-steps", "integer-time", "unnamed-dataarray", "named-dataarray"],
)
def test_bad_inputs_are_one_line(emu, coarse, make, parts):
    with pytest.raises(DataError) as exc:
        emu.downscale(make(coarse)).load()
    one_line(exc, *parts)


def test_named_dataarrays_are_accepted(emu, coarse):
    fine = emu.downscale([coarse["tas"], coarse["pr"]]).load()
    ref = emu.downscale(coarse).load()
    np.testing.assert_array_equal(fine["tas"].values, ref["tas"].values)


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({"mode": "median"}, ["argument 'mode'", "'median'", "'mean' or 'sample'"]),
        ({"halo": -1.0}, ["argument 'halo'", "-1.0"]),
        ({"halo": float("nan")}, ["argument 'halo'", "nan"]),
        ({"halo": float("inf")}, ["argument 'halo'", "inf"]),
        ({"seed": 1e20}, ["argument 'seed'", "not a whole number", "2**63"]),
        ({"seed": -1}, ["argument 'seed'", "out of range"]),
        ({"seed": 2**63}, ["argument 'seed'", "out of range"]),
        ({"members": 0}, ["argument 'members'", ">= 1"]),
        ({"members": 2.5}, ["argument 'members'", "not a whole number"]),
        ({"chunk_days": 0}, ["argument 'chunk_days'"]),
        ({"chunk_days": True}, ["argument 'chunk_days'", "bool"]),
        ({"chunk_days": 1.5}, ["argument 'chunk_days'"]),
        ({"on_implausible": "ignore"}, ["on_implausible", "'raise' or 'warn'"]),
    ],
)
def test_bad_arguments_are_one_line(emu, coarse, kwargs, parts):
    with pytest.raises(DataError) as exc:
        emu.downscale(coarse, **kwargs)
    one_line(exc, *parts, "Fix:")


def test_largest_seed_works(emu, coarse):
    fine = emu.downscale(coarse, seed=2**63 - 1, members=2, mode="sample").load()
    assert fine["tas"].shape[:2] == (4, 2)


def test_predict_arguments(emu, coarse):
    x = emu.coarse_fields(coarse).values
    from downscale.data.forcings import compute_forcings

    f = compute_forcings(coarse.time.values, emu.forcings, "historical", longitude=emu.meta.forcing_longitude)
    assert emu.predict(x, f).shape == (4, len(emu.targets), *emu.fine_grid.shape)
    for kwargs, part in [({"mode": "median"}, "mode"), ({"seed": 1e20}, "seed"), ({"members": 0}, "members")]:
        with pytest.raises(DataError) as exc:
            emu.predict(x, f, **kwargs)
        one_line(exc, part)
    with pytest.raises(DataError) as exc:
        emu.predict(x[0], f)
    one_line(exc, "x has the wrong shape", "Fix:")
    with pytest.raises(DataError) as exc:
        emu.predict(x, f[:2])
    one_line(exc, "forcings f have the wrong shape")


def test_memory_estimate_refuses_before_work(emu, coarse, monkeypatch):
    with pytest.raises(DataError) as exc:
        emu.downscale(coarse, members=10**7)
    one_line(exc, "not enough memory", "GiB", "Fix:")
    import downscale.emulator.runtime as runtime

    monkeypatch.setattr(runtime, "available_memory", lambda: 1 << 10)
    x = emu.coarse_fields(coarse).values
    with pytest.raises(DataError) as exc:
        emu.predict(x, np.zeros((4, emu.meta.model.n_forcings), np.float32))
    one_line(exc, "not enough memory", "0.0 GiB available")


def test_output_checks_in_the_api(emu, coarse):
    import downscale

    hot = coarse.copy()
    hot["tas"] = hot["tas"] + 400.0
    with pytest.raises(DataError) as exc:  # the inputs are refused first, where they enter
        emu.downscale(hot).load()
    one_line(exc, "implausible value", "plausible range")
    with downscale.set_options(plausibility="off"), pytest.raises(DataError) as exc:  # then the outputs
        emu.downscale(hot).load()
    one_line(exc, "implausible downscaled", "plausible range", 'on_implausible="warn"')
    with downscale.set_options(plausibility="off"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fine = emu.downscale(hot, on_implausible="warn").load()
    assert fine["tas"].shape[0] == 4
    assert any("implausible downscaled" in str(w.message) for w in caught)
