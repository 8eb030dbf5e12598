"""Regridding with the native backend, on the real grids in examples/data; xesmf only as 'not installed'."""

from __future__ import annotations

from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

from downscale.data.grids import Grid
from downscale.data.regrid import (
    BACKENDS,
    METHODS,
    Regridder,
    available_methods,
    create_regridder,
)
from downscale.errors import GridMismatchError, RegridError, UnknownNameError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
CNRM = DATA / "iberia/cmip5/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
EOBS = DATA / "iberia/eobs/tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"
RACMO = DATA / "iberia/cordex/tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
EUR22 = next((DATA / "grids").glob("tas_EUR-22_*.nc"))
XESMF_FIX = "conda install -c conda-forge esmpy xesmf; then pip install 'downscale[xesmf]'"
NT = 10  # time steps used from the daily files


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, decode_times=False).isel(time=slice(0, NT))


@pytest.fixture(scope="module")
def data() -> dict[str, xr.DataArray]:
    return {k: _open(p)["tas"].load() for k, p in {"cnrm": CNRM, "eobs": EOBS, "racmo": RACMO}.items()}


@pytest.fixture(scope="module")
def grids(data) -> dict[str, Grid]:
    out = {k: Grid.from_dataset(_open(p), file=str(p)) for k, p in {"cnrm": CNRM, "eobs": EOBS, "racmo": RACMO}.items()}
    ds = xr.open_dataset(EUR22, decode_times=False)
    out["curv"] = Grid.from_dataset(
        ds.drop_vars(["rotated_latitude_longitude", "rlat", "rlon"]).rename_dims({"rlat": "y", "rlon": "x"})
    )
    return out


def _linear(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return 2.5 * lat - 1.25 * lon + 7.0


# ------------------------------------------------------------------------------------------ bilinear
def test_bilinear_is_exact_for_linear_fields_rect_to_rect(grids):
    src = grids["cnrm"]
    tgt = Grid.rectilinear(np.arange(35.0, 44.0, 0.5), np.arange(-9.5, 4.0, 0.5))  # inside the source centres
    field = src.wrap(_linear(src.lat2d, src.lon2d), "f")
    out = create_regridder(src, tgt, "bilinear")(field)
    assert out.dims == ("lat", "lon") and out.shape == (18, 27)
    np.testing.assert_allclose(out.values, _linear(tgt.lat2d, tgt.lon2d), rtol=0, atol=1e-10)


def test_bilinear_rect_to_rotated_points(grids):
    src, tgt = grids["cnrm"], grids["racmo"]
    r = create_regridder(src, tgt, "bilinear")
    out = r(src.wrap(_linear(src.lat2d, src.lon2d), "f")).values
    inside = (
        (tgt.lat >= src.lat.min())
        & (tgt.lat <= src.lat.max())
        & (tgt.lon >= src.lon.min())
        & (tgt.lon <= src.lon.max())
    )
    assert inside.sum() == 558  # RACMO centres inside the hull of the CNRM centres
    np.testing.assert_allclose(out[inside], _linear(tgt.lat, tgt.lon)[inside], atol=1e-10)
    # outside the hull the target point is clamped onto the nearest edge of the source centres
    clamped = _linear(np.clip(tgt.lat, src.lat.min(), src.lat.max()), np.clip(tgt.lon, src.lon.min(), src.lon.max()))
    np.testing.assert_allclose(out[~inside], clamped[~inside], atol=1e-10)
    assert r.weights.shape == (840, 88) and r.weights.getnnz(axis=1).max() == 4


def test_bilinear_from_rotated_source_and_nan_propagation(grids, data):
    src, tgt = grids["racmo"], grids["eobs"]
    # linear in the rotated coordinates -> exact at the target points mapped into them
    ry, rx = np.meshgrid(src.y, src.x, indexing="ij")
    out = create_regridder(src, tgt, "bilinear")(src.wrap(3.0 * ry + rx, "f")).values
    ty, tx = src.native_coords(tgt.lat2d, tgt.lon2d)
    inside = (ty >= src.y.min()) & (ty <= src.y.max()) & (tx >= src.x.min()) & (tx <= src.x.max())
    np.testing.assert_allclose(out[inside], (3.0 * ty + tx)[inside], atol=1e-9)
    # a NaN source cell spoils exactly the targets that interpolate from it
    r = create_regridder(grids["eobs"], grids["cnrm"], "bilinear")
    res = r(data["eobs"].isel(time=0)).values
    w = r.weights.toarray()
    src_nan = np.isnan(data["eobs"].isel(time=0).values.ravel())
    np.testing.assert_array_equal(np.isnan(res.ravel()), (w[:, src_nan] > 0).any(axis=1))


# ------------------------------------------------------------------------------------------ conservative
def test_conservative_preserves_global_mean_and_constants():
    rng = np.random.default_rng(0)
    src = Grid.rectilinear(np.arange(-89.5, 90), np.arange(0.5, 360))  # 1 deg, lon 0..360
    tgt = Grid.rectilinear(np.linspace(-88.75, 88.75, 72), np.arange(-180, 180, 3.75) + 1.875)
    x = rng.normal(280, 10, src.shape)
    out = create_regridder(src, tgt, "conservative")(src.wrap(x, "tas")).values
    mean_src = (x * src.cell_area()).sum() / src.cell_area().sum()
    mean_tgt = (out * tgt.cell_area()).sum() / tgt.cell_area().sum()
    assert abs(mean_tgt / mean_src - 1) < 1e-6
    const = create_regridder(src, tgt, "conservative")(src.wrap(np.full(src.shape, 3.5), "c")).values
    np.testing.assert_allclose(const, 3.5, rtol=1e-12)


def test_conservative_domain_mean_on_eobs(grids):
    src = grids["eobs"]  # cells 35.0..44.5N, 10W..4.5E
    tgt = Grid.rectilinear(
        np.linspace(35.95, 43.55, 5),
        np.linspace(-9.09375, 3.59375, 8),
        lat_bounds=np.linspace(35, 44.5, 6),
        lon_bounds=np.linspace(-10, 4.5, 9),
    )
    x = np.random.default_rng(1).gamma(2.0, 3.0, (4,) + src.shape).astype(np.float32)
    out = create_regridder(src, tgt, "conservative")(src.wrap(x, "pr"))
    assert out.dtype == np.float32 and out.dims == ("time", "lat", "lon")
    a_s, a_t = src.cell_area(), tgt.cell_area()
    for t in range(4):
        m_s = (x[t] * a_s).sum() / a_s.sum()
        m_t = (out.values[t] * a_t).sum() / a_t.sum()
        assert abs(m_t / m_s - 1) < 1e-6


def test_conservative_skips_nan_and_renormalises(grids, data):
    src, tgt = grids["eobs"], grids["cnrm"]
    x = data["eobs"].isel(time=0).values.astype(np.float64)  # E-OBS: sea cells are NaN
    out = create_regridder(src, tgt, "conservative")(src.wrap(x, "tas")).values
    assert np.isnan(out).sum() == 18 and np.isfinite(out).sum() == 70
    # hand computation for coarse cell (3, 2): overlap = sin-lat band x lon interval, NaN cells left out
    lat_b, lon_b = tgt.lat_bounds[3:5], tgt.lon_bounds[2:4]
    num = den = 0.0
    for i, la in enumerate(src.lat):
        for j, lo in enumerate(src.lon):
            lo0, lo1 = max(lo - 0.25, lon_b[0]), min(lo + 0.25, lon_b[1])
            la0, la1 = max(la - 0.25, lat_b[0]), min(la + 0.25, lat_b[1])
            if lo1 > lo0 and la1 > la0 and np.isfinite(x[i, j]):
                w = (np.sin(np.deg2rad(la1)) - np.sin(np.deg2rad(la0))) * (lo1 - lo0)
                num, den = num + w * x[i, j], den + w
    assert out[3, 2] == pytest.approx(num / den, rel=1e-12)
    # an all-NaN source gives an all-NaN target, a constant with holes stays constant where defined
    assert np.isnan(create_regridder(src, tgt, "conservative")(src.wrap(np.full(src.shape, np.nan), "x"))).all()
    holes = np.where(np.isnan(x), np.nan, 2.0)
    res = create_regridder(src, tgt, "conservative")(src.wrap(holes, "x")).values
    np.testing.assert_allclose(res[np.isfinite(res)], 2.0, rtol=1e-12)


# ------------------------------------------------------------------------------------------ area_mean
def test_area_mean_constant_from_racmo_onto_cnrm(grids):
    src, tgt = grids["racmo"], grids["cnrm"]
    out = create_regridder(src, tgt, "area_mean")(src.wrap(np.full((2,) + src.shape, 7.25), "c")).values
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, 7.25, rtol=1e-12)


def test_area_mean_equals_hand_computation(grids, data):
    src, tgt = grids["racmo"], grids["cnrm"]
    da = data["racmo"]
    r = create_regridder(src, tgt, "area_mean")
    out = r(da)
    assert out.dims == ("time", "lat", "lon") and out.dtype == np.float32
    # coarse cell (4, 5): CNRM edges are midpoints between centres
    lat0, lat1 = (tgt.lat[3] + tgt.lat[4]) / 2, (tgt.lat[4] + tgt.lat[5]) / 2
    lon0, lon1 = (tgt.lon[4] + tgt.lon[5]) / 2, (tgt.lon[5] + tgt.lon[6]) / 2
    inside = (src.lat >= lat0) & (src.lat < lat1) & (src.lon >= lon0) & (src.lon < lon1)
    assert 8 <= inside.sum() <= 16
    rlat_b = np.deg2rad(np.stack([src.y - 0.22, src.y + 0.22]))
    area = (np.sin(rlat_b[1]) - np.sin(rlat_b[0]))[:, None] * np.ones(src.shape[1])  # equal rlon widths
    vals = da.values.astype(np.float64)
    expect = (vals[:, inside] * area[inside]).sum(axis=1) / area[inside].sum()
    np.testing.assert_allclose(out.values[:, 4, 5], expect, rtol=1e-6)
    # NaN fine cells are skipped; a coarse cell whose fine centres are all NaN is NaN
    holed = vals[0].copy()
    holed[inside] = np.nan
    res = r(src.wrap(holed, "x")).values
    assert np.isnan(res[4, 5]) and np.isnan(res).sum() == 1


def test_area_mean_from_curvilinear_and_outside_cells(grids):
    src, tgt = grids["curv"], grids["cnrm"]
    out = create_regridder(src, tgt, "area_mean")(src.wrap(np.ones(src.shape), "c")).values
    np.testing.assert_allclose(out, 1.0)
    far = Grid.rectilinear([-60.0, -58.0], [100.0, 102.0])  # no fine centre there
    assert np.isnan(create_regridder(src, far, "area_mean")(src.wrap(np.ones(src.shape), "c")).values).all()


# ------------------------------------------------------------------------------------------ nearest
def test_nearest_returns_source_values(grids, data):
    src, tgt = grids["cnrm"], grids["racmo"]
    x = data["cnrm"].values
    out = create_regridder(src, tgt, "nearest")(data["cnrm"]).values
    assert np.isin(out, x).all()
    # RACMO cell (14, 15) lies at 39.3N 3.6W: the nearest CNRM centre is (39.92N, 4.22W) = index (4, 4)
    i = np.argmin((src.lat[:, None] - tgt.lat[14, 15]) ** 2 + (src.lon[None, :] - tgt.lon[14, 15]) ** 2)
    np.testing.assert_array_equal(out[:, 14, 15], x[:, i // 11, i % 11])
    same = create_regridder(grids["eobs"], grids["eobs"], "nearest")(data["eobs"])
    np.testing.assert_array_equal(same.values, data["eobs"].values)


# ------------------------------------------------------------------------------------------ xarray plumbing
def test_dask_stays_lazy_and_matches_numpy(grids, data):
    r = create_regridder(grids["racmo"], grids["cnrm"], "area_mean")
    lazy_in = data["racmo"].chunk({"time": 3, "rlat": 10})
    out = r(lazy_in)
    assert isinstance(out.data, dask.array.Array)
    assert out.chunks[0] == (3, 3, 3, 1)
    np.testing.assert_array_equal(out.values, r(data["racmo"]).values)
    b = create_regridder(grids["cnrm"], grids["racmo"], "bilinear")
    np.testing.assert_array_equal(b(data["cnrm"].chunk({"time": 4})).compute().values, b(data["cnrm"]).values)


def test_output_coords_attrs_and_leading_dims(grids, data):
    da = data["cnrm"]
    out = create_regridder(grids["cnrm"], grids["racmo"], "bilinear")(da)
    assert out.dims == ("time", "rlat", "rlon") and out.name == "tas"
    np.testing.assert_array_equal(out["time"].values, da["time"].values)
    assert out["lat"].dims == ("rlat", "rlon") and out["rlat"].attrs["standard_name"] == "grid_latitude"
    assert out.attrs["grid_mapping"] == "rotated_pole" and out.attrs["regrid_method"] == "bilinear"
    assert out.attrs["units"] == "K" and out.dtype == np.float32
    assert Grid.from_dataset(out) == grids["racmo"]
    back = create_regridder(grids["racmo"], grids["cnrm"], "area_mean")(out)
    assert "grid_mapping" not in back.attrs and back.attrs["regrid_method"] == "area_mean"
    assert Grid.from_dataset(back) == grids["cnrm"]
    # several leading dims, transposed input
    stacked = xr.concat([da, da + 1], dim="member").transpose("lon", "member", "time", "lat")
    res = create_regridder(grids["cnrm"], grids["eobs"], "nearest")(stacked)
    assert res.dims == ("member", "time", "lat", "lon") and res.shape == (2, NT, 19, 29)
    np.testing.assert_allclose(res.isel(member=1) - res.isel(member=0), 1.0)
    with pytest.raises(GridMismatchError, match="not on the regridder's source grid"):
        create_regridder(grids["cnrm"], grids["eobs"], "nearest")(data["racmo"])


# ------------------------------------------------------------------------------------------ selection, errors
def test_registry_and_available_methods(grids):
    assert METHODS == ("bilinear", "conservative", "area_mean", "nearest")
    assert BACKENDS.names() == ["native", "xarray_regrid", "xesmf"]
    assert BACKENDS.get("xesmf").available() is False and BACKENDS.get("native").available()
    assert available_methods(grids["cnrm"], grids["eobs"]) == list(METHODS)
    assert available_methods(grids["cnrm"], grids["racmo"]) == ["bilinear", "area_mean", "nearest"]
    assert available_methods(grids["curv"], grids["racmo"]) == ["area_mean", "nearest"]
    r = create_regridder(grids["cnrm"], grids["eobs"], "conservative")
    assert isinstance(r, Regridder) and (r.backend, r.method) == ("native", "conservative")


@pytest.mark.parametrize("target", ["racmo", "curv"])
def test_conservative_onto_non_rectilinear_needs_xesmf(grids, target):
    with pytest.raises(RegridError, match="'conservative' regridding from a rectilinear grid onto a") as e:
        create_regridder(grids["cnrm"], grids[target], "conservative")
    assert XESMF_FIX in str(e.value) and "\n" not in str(e.value)


def test_explicit_xesmf_backend_is_refused(grids):
    with pytest.raises(RegridError, match="'xesmf' regrid backend is not installed") as e:
        create_regridder(grids["cnrm"], grids["eobs"], "bilinear", backend="xesmf")
    assert XESMF_FIX in str(e.value)
    with pytest.raises(RegridError, match="xesmf"):
        create_regridder(grids["cnrm"], grids["eobs"], "patch")


def test_unknown_names(grids):
    with pytest.raises(UnknownNameError, match="did you mean 'bilinear'"):
        create_regridder(grids["cnrm"], grids["eobs"], "bilnear")
    with pytest.raises(UnknownNameError, match="did you mean 'native'"):
        create_regridder(grids["cnrm"], grids["eobs"], "bilinear", backend="nativ")
    with pytest.raises(RegridError, match="'native' regrid backend cannot do 'conservative'"):
        create_regridder(grids["cnrm"], grids["racmo"], "conservative", backend="native")


# ------------------------------------------------------------------------------------------ cross-check
@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_native_agrees_with_xarray_regrid(grids, data, method):
    """The native sparse weights reproduce the independent xarray-regrid package (E-OBS 0.5 deg -> CNRM-CM5)."""
    src, tgt = ("eobs", "cnrm") if method == "conservative" else ("cnrm", "eobs")
    da = data[src]
    native = create_regridder(grids[src], grids[tgt], method)(da)
    other = create_regridder(grids[src], grids[tgt], method, backend="xarray_regrid")(da)
    assert other.dims == native.dims and other.shape == native.shape
    # xarray-regrid leaves NaN where the native backend clamps (bilinear) or renormalises partial cover
    # (conservative): compare where both are defined
    a, b = native.values, other.values
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.5
    np.testing.assert_allclose(a[both], b[both], rtol=0, atol=5e-3)  # K


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("method", ["bilinear", "conservative", "nearest"])
def test_same_grid_round_trip_is_identity(grids, data, method):
    out = create_regridder(grids["eobs"], grids["eobs"], method)(data["eobs"])
    np.testing.assert_allclose(out.values, data["eobs"].values, rtol=0, atol=1e-4, equal_nan=True)


def test_conservative_there_and_back_keeps_the_area_mean():
    """0.5 deg -> 1.0 deg (exact 2x2 blocks) -> 0.5 deg: the area-weighted mean survives both ways."""
    fine = Grid.rectilinear(np.arange(35.25, 45.0, 0.5), np.arange(-9.75, 4.0, 0.5))
    coarse = Grid.rectilinear(np.arange(35.5, 45.0, 1.0), np.arange(-9.5, 4.5, 1.0))
    rng = np.random.default_rng(0)
    values = xr.DataArray(rng.normal(280, 5, (3, *fine.shape)), dims=("time", *fine.dims))
    up = create_regridder(fine, coarse, "conservative")(values)
    back = create_regridder(coarse, fine, "conservative")(up)
    w_f, w_c = fine.cell_area(), coarse.cell_area()

    def mean(v, w):
        return (v * w).sum(axis=(-2, -1)) / w.sum()

    np.testing.assert_allclose(mean(up.values, w_c), mean(values.values, w_f), rtol=1e-10)
    np.testing.assert_allclose(mean(back.values, w_f), mean(values.values, w_f), rtol=1e-10)
    # and each coarse cell is the area mean of its 2x2 block
    block = values.values[0, :2, :2]
    np.testing.assert_allclose(up.values[0, 0, 0], (block * w_f[:2, :2]).sum() / w_f[:2, :2].sum(), rtol=1e-10)
