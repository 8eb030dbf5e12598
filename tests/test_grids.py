"""Grid detection, identity, geometry and CF writing, on the real files in examples/data."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import cf_xarray  # noqa: F401 - registers the .cf accessor used below
import numpy as np
import pytest
import xarray as xr

from downscale.data.grids import EARTH_RADIUS, Grid, rotate, unrotate
from downscale.errors import DataError, GridMismatchError

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
CNRM = DATA / "iberia/cmip5/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"
EOBS = DATA / "iberia/eobs/tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc"
RACMO = DATA / "iberia/cordex/tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc"
EUR22 = next((DATA / "grids").glob("tas_EUR-22_*.nc"))
HIRHAM = next((DATA / "grids").glob("pr_HIRHAM-DMI_*.nc"))
HSURF44 = DATA / "grids/orog_HSURF_0.44deg_fx.nc"


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, decode_times=False)


@pytest.fixture(scope="module")
def grids() -> dict[str, Grid]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            name: Grid.from_dataset(_open(p), file=str(p))
            for name, p in {"cnrm": CNRM, "eobs": EOBS, "racmo": RACMO, "eur22": EUR22, "hirham": HIRHAM}.items()
        }


def _curvilinear(path: Path, mapping: str) -> xr.Dataset:
    """The rotated file as a plain curvilinear one: no grid mapping, no rlat/rlon, 2-D lat/lon on (y, x)."""
    ds = _open(path).drop_vars([mapping, "rlat", "rlon"]).rename_dims({"rlat": "y", "rlon": "x"})
    for v in ds.data_vars.values():
        v.attrs.pop("grid_mapping", None)
    return ds


# ------------------------------------------------------------------------------------------ detection
def test_rectilinear_detection(grids):
    g = grids["cnrm"]
    assert (g.kind, g.dims, g.shape, g.size) == ("rectilinear", ("lat", "lon"), (8, 11), 88)
    assert g.mapping is None and g.mapping_name is None
    np.testing.assert_allclose(g.lat[[0, -1]], [34.31877136, 44.1240921])
    np.testing.assert_allclose(g.lon[[0, -1]], [-9.84375, 4.21875])
    np.testing.assert_allclose(g.lon_bounds[[0, -1]], [-10.546875, 4.921875])  # half-spacing extrapolated
    assert g.y is g.lat and g.x is g.lon
    assert grids["eobs"].shape == (19, 29)
    np.testing.assert_allclose(grids["eobs"].lat_bounds[[0, -1]], [35.0, 44.5])


def test_rotated_detection(grids):
    g = grids["racmo"]
    assert (g.kind, g.dims, g.shape, g.mapping_name) == ("rotated_pole", ("rlat", "rlon"), (28, 30), "rotated_pole")
    assert g.mapping["grid_north_pole_latitude"] == 39.25 and g.mapping["grid_north_pole_longitude"] == -162.0
    assert g.lat.shape == g.lon.shape == (28, 30)
    np.testing.assert_allclose(g.y[[0, -1]], [-14.85, -2.97])
    e = grids["eur22"]
    assert (e.kind, e.shape, e.mapping_name) == ("rotated_pole", (201, 225), "rotated_latitude_longitude")


def test_rotated_mapping_that_contradicts_latlon_is_fixed_from_latlon():
    # the HIRHAM file's grid mapping says pole 18N 140.75W, but its 2-D lat/lon are on the EUR pole
    with pytest.warns(UserWarning, match="does not reproduce the 2-D lat/lon"):
        g = Grid.from_dataset(_open(HIRHAM), file=str(HIRHAM))
    assert (g.kind, g.shape) == ("rotated_pole", (190, 174))
    assert (g.mapping["grid_north_pole_latitude"], g.mapping["grid_north_pole_longitude"]) == (39.25, -162.0)
    ds = _open(HIRHAM)
    la, lo = unrotate(*np.meshgrid(g.y, g.x, indexing="ij"), g.mapping)
    assert np.abs(la - ds.lat.values).max() < 1e-3 and np.abs(lo - ds.lon.values).max() < 1e-3


def test_curvilinear_detection():
    ds = _curvilinear(EUR22, "rotated_latitude_longitude")
    g = Grid.from_dataset(ds)
    assert (g.kind, g.dims, g.shape) == ("curvilinear", ("y", "x"), (201, 225))
    assert g.y is None and g.x is None and g.mapping is None
    np.testing.assert_array_equal(g.lat, ds.lat.values.astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = Grid.from_dataset(_curvilinear(HIRHAM, "rotated_pole"))
    assert (h.kind, h.shape) == ("curvilinear", (190, 174))


def test_dataarray_gives_the_dataset_grid(grids):
    # ds["tas"] does not carry the rotated_pole variable: the pole is inferred from rlat/rlon + lat/lon
    assert Grid.from_dataset(_open(RACMO)["tas"]) == grids["racmo"]
    assert Grid.from_dataset(_open(EUR22)["tas"]) == grids["eur22"]
    assert Grid.from_dataset(_open(CNRM)["tas"]) == grids["cnrm"]
    assert Grid.from_dataset(_open(HSURF44)["orog"]) == Grid.from_dataset(_open(HSURF44))  # pole at 90N


def test_no_coordinates_is_a_dataerror():
    ds = xr.Dataset({"tas": (("a", "b"), np.zeros((2, 3)))})
    with pytest.raises(DataError, match=r"^bad\.nc: no horizontal coordinates found .*Fix: give a CF file"):
        Grid.from_dataset(ds, file="bad.nc")


def test_longitudes_split_across_the_seam_are_refused():
    ds = _open(CNRM)
    rolled = ds.assign_coords(lon=ds.lon % 360).sortby("lon")  # 0..4.2E then 350..358.6: not contiguous
    with pytest.raises(DataError, match=r"cnrm360\.nc: rectilinear longitudes are not strictly monotonic .*sortby"):
        Grid.from_dataset(rolled, file="cnrm360.nc")
    # a global 0..360 grid is fine (it only wraps at its own edge)
    assert Grid.rectilinear(np.arange(-89.5, 90), np.arange(0.5, 360)).lon_bounds[[0, -1]].tolist() == [0.0, 360.0]


# ------------------------------------------------------------------------------------------ identity
def test_id_is_stable_and_discriminating(grids):
    ids = {k: g.id for k, g in grids.items()}
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids.values())
    assert len(set(ids.values())) == len(ids)
    assert Grid.from_dataset(_open(RACMO)).id == ids["racmo"]  # re-open
    for g in grids.values():
        back = Grid.from_dict(json.loads(json.dumps(g.to_dict())))
        assert back.id == g.id and back == g and hash(back) == hash(g)
        assert back.kind == g.kind and back.dims == g.dims
    # not the dim names: same coordinates under other names
    renamed = _open(CNRM).rename({"lat": "latitude", "lon": "longitude"})
    assert Grid.from_dataset(renamed).id == ids["cnrm"]
    # a subset or a shifted copy is another grid
    assert Grid.from_dataset(_open(RACMO).isel(rlat=slice(1, None))).id != ids["racmo"]
    shifted = Grid.rectilinear(grids["cnrm"].lat + 0.01, grids["cnrm"].lon)
    assert shifted.id != ids["cnrm"]
    # longitudes are normalised: 0..360 and -180..180 give the same grid
    assert Grid.rectilinear([0.0, 1.0], [350.0, 355.0]) == Grid.rectilinear([0.0, 1.0], [-10.0, -5.0])


def test_from_dict_refuses_an_edited_description(grids):
    d = grids["cnrm"].to_dict()
    d["lat"][0] += 1.0
    with pytest.raises(GridMismatchError, match="does not match its id"):
        Grid.from_dict(d)


def test_describe(grids):
    g = grids["racmo"]
    assert g.describe() == (f"rotated_pole 28x30 (pole 39.25N 162.0W), lat 31.8..46.8, lon -14.0..6.0, id {g.id}")
    assert grids["cnrm"].describe().startswith("rectilinear 8x11 (1.40x1.41 deg), lat 34.3..44.1, lon -9.8..4.2")
    assert "\n" not in grids["eur22"].describe()


# ------------------------------------------------------------------------------------------ geometry
def test_global_cell_area_sums_to_the_sphere():
    g = Grid.rectilinear(np.arange(-89.5, 90), np.arange(0.5, 360))
    area = g.cell_area()
    assert area.shape == (180, 360)
    assert abs(area.sum() / (4 * np.pi * EARTH_RADIUS**2) - 1) < 1e-6
    # one equatorial 1x1 degree cell: R^2 * (sin 1deg) * (pi/180)
    assert area[90, 0] == pytest.approx(EARTH_RADIUS**2 * np.sin(np.deg2rad(1)) * np.deg2rad(1), rel=1e-12)


def test_rotated_cell_area_is_exact_and_matches_curvilinear_estimate(grids):
    g = grids["eur22"]
    area = g.cell_area()
    dy, dx = np.deg2rad(0.22), np.deg2rad(0.22)
    expect = EARTH_RADIUS**2 * (np.sin(np.deg2rad(g.y) + dy / 2) - np.sin(np.deg2rad(g.y) - dy / 2))[:, None] * dx
    np.testing.assert_allclose(area, np.broadcast_to(expect, area.shape), rtol=1e-6)
    curv = Grid.from_dataset(_curvilinear(EUR22, "rotated_latitude_longitude")).cell_area()
    assert np.abs(curv / area - 1).max() < 1e-3
    assert abs(curv.sum() / area.sum() - 1) < 1e-5


@pytest.mark.parametrize("path", [RACMO, EUR22])
def test_rotated_latlon_recomputed_from_pole(path):
    ds = _open(path)
    g = Grid.from_dataset(ds.drop_vars(["lat", "lon"]))
    assert g.kind == "rotated_pole"
    assert np.abs(g.lat - ds.lat.values).max() < 1e-3
    assert np.abs((g.lon - ds.lon.values + 180) % 360 - 180).max() < 1e-3  # EUR-22 stores lon in 0..360
    assert g.lon.min() >= -180 and g.lon.max() < 180
    assert g == Grid.from_dataset(ds)
    rlat, _rlon = rotate(g.lat, g.lon, g.mapping)
    np.testing.assert_allclose(rlat, np.broadcast_to(g.y[:, None], g.shape), atol=1e-9)


def test_covers(grids):
    cnrm, eobs, racmo = grids["cnrm"], grids["eobs"], grids["racmo"]
    assert cnrm.covers(eobs)  # E-OBS centres lie inside the CNRM cells
    assert not cnrm.covers(racmo)  # 168 RACMO centres are outside the CNRM box
    assert cnrm.covers(racmo, halo=3.6) and not cnrm.covers(racmo, halo=3.3)  # RACMO reaches 14.0W
    assert not eobs.covers(cnrm)
    assert not racmo.covers(eobs)  # two E-OBS centres (43.75/44.25N, 4.25E) lie past its NE corner
    assert racmo.covers(eobs, halo=0.2)
    assert racmo.covers(racmo)
    curv = Grid.from_dataset(_curvilinear(EUR22, "rotated_latitude_longitude"))
    assert curv.covers(racmo) and curv.covers(eobs) and not curv.covers(Grid.rectilinear([0.0], [0.0]))


# ------------------------------------------------------------------------------------------ CF writing
def test_rotated_dataset_roundtrips_through_netcdf(grids, tmp_path):
    g = grids["racmo"]
    cds = g.coords_dataset()
    assert cds["rlat"].attrs["standard_name"] == "grid_latitude" and cds["rlat"].attrs["axis"] == "Y"
    assert cds["lon"].dims == ("rlat", "rlon") and cds["lon"].attrs["units"] == "degrees_east"
    assert cds["rotated_pole"].attrs["grid_mapping_name"] == "rotated_latitude_longitude"
    values = np.arange(3 * 28 * 30, dtype=np.float32).reshape(3, 28, 30)
    da = g.wrap(values, "tas", coords={"time": [0.0, 1.0, 2.0]}, attrs={"units": "K"})
    assert da.dims == ("time", "rlat", "rlon") and da.attrs == {"units": "K", "grid_mapping": "rotated_pole"}
    ds = g.to_dataset({"tas": da})
    assert "rotated_pole" in ds.data_vars
    ds.to_netcdf(tmp_path / "out.nc")
    back = _open(tmp_path / "out.nc")
    assert back["tas"].attrs["grid_mapping"] == "rotated_pole"
    assert back.cf["latitude"].name == "lat" and back.cf.grid_mapping_names == {
        "rotated_latitude_longitude": ["rotated_pole"]
    }
    assert Grid.from_dataset(back).id == g.id
    np.testing.assert_array_equal(back["tas"].values, values)
    # coords_dataset as the caller uses it
    made = xr.Dataset({"tas": (("time",) + g.dims, values)}, coords=cds.coords).merge(cds)
    assert Grid.from_dataset(made) == g


@pytest.mark.parametrize("which", ["cnrm", "curvilinear"])
def test_other_kinds_roundtrip_through_netcdf(grids, which, tmp_path):
    g = grids["cnrm"] if which == "cnrm" else Grid.from_dataset(_curvilinear(EUR22, "rotated_latitude_longitude"))
    ds = g.to_dataset({"orog": g.wrap(np.ones(g.shape), "orog")})
    assert ds["orog"].dims == g.dims and "grid_mapping" not in ds["orog"].attrs
    ds.to_netcdf(tmp_path / "out.nc")
    assert Grid.from_dataset(_open(tmp_path / "out.nc")) == g


def test_wrap_checks_the_shape(grids):
    with pytest.raises(GridMismatchError, match="values do not fit the grid"):
        grids["cnrm"].wrap(np.zeros((2, 8, 10)), "tas")
