"""``downscale apply`` at scale: DRS grouping, periods, region subset with halo, plev inputs, calendars,
resumption after SIGKILL, the lock, dask.distributed, members, output sanity checks and the clean errors.

Inputs are written to tmp_path from the real CNRM-CM5 Iberia files (a few winters), and the emulators are the
quickly trained ``tiny_bundle`` and a tiny emulator-framework bundle that needs ``ta850``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import downscale
from downscale.apply import downscale_files
from downscale.apply.inputs import parse_drs
from downscale.cli.main import app
from downscale.data.grids import Grid
from downscale.data.region import check_covers, subset_region
from downscale.errors import GridMismatchError

ROOT = Path(__file__).resolve().parents[1]
CMIP5 = ROOT / "examples" / "data" / "iberia" / "cmip5"
CORDEX = ROOT / "examples" / "data" / "iberia" / "cordex"
CODER = xr.coders.CFDatetimeCoder(use_cftime=True)
DAYS = 60  # December 1982 and January 1983 (2081 for rcp85): two 30-day chunks per projection
runner = CliRunner()


def _open(path: Path) -> xr.Dataset:
    return xr.open_dataset(path, decode_times=CODER)


def _src(var: str, exp: str = "historical") -> Path:
    years = "1983-2002" if exp == "historical" else "2081-2100"
    return CMIP5 / f"{var}_day_CNRM-CM5_{exp}_r1i1p1_DJF{years}.nc"


def _write(ds: xr.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def _small(folder: Path, variables=("tas", "pr"), experiments=("historical", "rcp85"), days: int = DAYS) -> Path:
    for exp in experiments:
        for var in variables:
            src = _src(var, exp)
            _write(_open(src).isel(time=slice(0, days)), folder / src.name)
    return folder


def _outputs(folder: Path) -> dict[str, xr.Dataset]:
    return {p.name: _open(p) for p in sorted(folder.glob("*.nc"))}


def _same(a: Path, b: Path) -> None:
    fa, fb = _outputs(a), _outputs(b)
    assert sorted(fa) == sorted(fb) and fa
    for name in fa:
        var = name.split("_")[0]
        assert np.array_equal(fa[name][var].values, fb[name][var].values, equal_nan=True), name


def invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny models are fastest on one thread, and 2 cores are shared: no OpenMP spinning."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """tas and pr of CNRM-CM5 historical and rcp85, 60 days each, CMIP5 DRS names."""
    return _small(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bundle, small) -> Path:
    """An uninterrupted serial run on ``small`` with 30-day chunks."""
    out = tmp_path_factory.mktemp("reference")
    downscale_files(tiny_bundle, [small], out, chunk_days=30)
    return out


@pytest.fixture(scope="module")
def plev_bundle(tmp_path_factory) -> Path:
    """A tiny emulator-framework bundle whose predictors are tas, pr and ta850 of CNRM-CM5."""
    from downscale.train.run import train

    folder = tmp_path_factory.mktemp("plev")
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"""
name: tiny-plev
framework: emulator
data:
  predictors:
    tas: {_src("tas")}
    pr: {_src("pr")}
    ta850: {_src("ta850")}
  targets:
    tas: {CORDEX}/tas_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc
    pr: {CORDEX}/pr_EUR-44_ICHEC-EC-EARTH_historical_r1i1p1_KNMI-RACMO22E_v1_day_DJF1983-2002.nc
  coarse_grid: {_src("tas")}
  forcings: [season]
  periods:
    train: {{season: DJF, years: [1983, 1983]}}
model: {{type: simple_cnn, width: 8, coarse_blocks: 1, fine_blocks: 1}}
train: {{epochs: 1, batch_size: 32}}
""")
    train(recipe, folder / "bundle", progress=False)
    return folder / "bundle"


# ------------------------------------------------------------------------------------------- grouping
def test_parse_drs_cmip5_and_cmip6():
    d = parse_drs("tas_day_CNRM-CM5_rcp85_r1i1p1_20060101-20151231.nc")
    assert (d.variable, d.table, d.model, d.experiment, d.member, d.grid, d.dates) == (
        "tas",
        "day",
        "CNRM-CM5",
        "rcp85",
        "r1i1p1",
        None,
        "20060101-20151231",
    )
    d = parse_drs("ta_day_MPI-ESM1-2-HR_ssp585_r1i1p1f1_gn_20150101-20191231.nc")
    assert (d.model, d.experiment, d.member, d.grid, d.dates) == (
        "MPI-ESM1-2-HR",
        "ssp585",
        "r1i1p1f1",
        "gn",
        "20150101-20191231",
    )
    assert parse_drs("cnrm_tas_pr.nc").model is None


def test_hist_and_rcp85_give_separate_cf_outputs(reference, tiny_bundle):
    names = sorted(p.name for p in reference.glob("*.nc"))
    assert names == [
        f"{v}_EUR-44_CNRM-CM5_{e}_r1i1p1_downscale-perfect-model-iberia_day_{d}.nc"
        for v in ("pr", "tas")
        for e, d in (("historical", "19821201-19830129"), ("rcp85", "20801201-20810129"))
    ]
    assert sorted(p.name for p in reference.iterdir() if p.name.startswith(".")) == [
        ".downscale-apply.log",
        ".downscale-output.json",
    ]
    emu = downscale.load(tiny_bundle)
    ds = _open(reference / names[0])
    pr = ds["pr"]
    assert ds.attrs["Conventions"] == "CF-1.8" and "downscale apply" in ds.attrs["history"]
    assert ds.attrs["downscale_bundle_id"] == emu.id
    assert (
        ds.attrs["driving_model_id"],
        ds.attrs["driving_experiment_name"],
        ds.attrs["driving_model_ensemble_member"],
    ) == ("CNRM-CM5", "historical", "r1i1p1")
    assert pr.attrs["grid_mapping"] == "rotated_pole" and ds["rotated_pole"].attrs["grid_mapping_name"]
    assert ds["lat"].dims == ("rlat", "rlon") and pr.encoding["zlib"] and pr.dims == ("time", "rlat", "rlon")
    assert ds["time"].encoding["calendar"] == "standard" and ds.sizes["time"] == DAYS
    assert ds.attrs["downscale_sanity"].startswith("passed")
    assert float(pr.min()) >= 0.0 and np.isfinite(pr.values).all()


def test_grouping_falls_back_to_drs_names(tmp_path, tiny_bundle, reference):
    """Without global attributes the projection comes from the file names."""
    for src in _small(tmp_path / "raw").glob("*.nc"):
        ds = _open(src)
        ds.attrs = {}
        _write(ds, tmp_path / "in" / src.name)
    downscale_files(tiny_bundle, [tmp_path / "in"], tmp_path / "out", chunk_days=30)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nc")) == sorted(p.name for p in reference.glob("*.nc"))


def test_one_output_per_input_period(tmp_path, tiny_bundle, reference):
    """Two files per variable (one per winter) give two outputs per variable, with the same numbers."""
    for var in ("tas", "pr"):
        ds = _open(_src(var)).isel(time=slice(0, DAYS))
        _write(
            ds.isel(time=slice(0, 31)), tmp_path / "in" / f"{var}_day_CNRM-CM5_historical_r1i1p1_19821201-19821231.nc"
        )
        _write(
            ds.isel(time=slice(31, DAYS)),
            tmp_path / "in" / f"{var}_day_CNRM-CM5_historical_r1i1p1_19830101-19830129.nc",
        )
    downscale_files(tiny_bundle, [str(tmp_path / "in" / "*.nc")], tmp_path / "out", chunk_days=30)
    names = sorted(p.name for p in (tmp_path / "out").glob("tas_*.nc"))
    assert [n.rsplit("_", 1)[1] for n in names] == ["19821201-19821231.nc", "19830101-19830129.nc"]
    joined = xr.concat([_open(tmp_path / "out" / n)["tas"] for n in names], "time")
    (ref,) = reference.glob("tas_*historical*.nc")
    np.testing.assert_allclose(joined.values, _open(ref)["tas"].values, rtol=1e-6)  # other chunks: 1 ulp


# ------------------------------------------------------------------------------------------- region
def _global(var: str, days: int = DAYS) -> xr.Dataset:
    """The Iberian CNRM-CM5 field embedded in a global-longitude grid (0..358.6E, 1.40625 deg, so Iberia
    straddles the seam) spanning 7S..72N, filled with a smooth synthetic field elsewhere."""
    src = _open(_src(var)).isel(time=slice(0, days))
    lat_c = src["lat"].values
    dlat = float(np.diff(lat_c).mean())
    lat = np.concatenate([lat_c[0] - dlat * np.arange(30, 0, -1), lat_c, lat_c[-1] + dlat * np.arange(1, 21)])
    lon = np.arange(256) * 1.40625
    base = float(src[var].mean())
    field = base * (1.0 + 0.05 * np.cos(np.radians(lat))[:, None] * np.sin(np.radians(lon))[None, :])
    data = np.broadcast_to(field.astype(np.float32), (days, lat.size, lon.size)).copy()
    cols = np.round((src["lon"].values % 360.0) / 1.40625).astype(int)
    data[:, 30:38, :][:, :, cols] = src[var].values
    out = xr.Dataset(
        {var: (("time", "lat", "lon"), data, src[var].attrs)},
        coords={"time": src["time"], "lat": ("lat", lat, src["lat"].attrs), "lon": ("lon", lon, src["lon"].attrs)},
        attrs=src.attrs,
    )
    out["time"].encoding.update(src["time"].encoding)
    return out


def test_global_input_is_subset_with_halo_and_matches_the_regional_one(tmp_path, tiny_bundle, reference):
    for var in ("tas", "pr"):
        _write(_global(var), tmp_path / "in" / f"{var}_day_CNRM-CM5_historical_r1i1p1_gn_19821201-19830129.nc")
    emu = downscale.load(tiny_bundle)
    ds = _open(next((tmp_path / "in").glob("tas_*.nc")))
    grid = Grid.from_dataset(ds)
    _sub, sub_grid = subset_region(ds["tas"], grid, emu.coarse_grid, 2.9)
    assert sub_grid.shape[0] < 20 and sub_grid.shape[1] < 20  # of 58 x 256: read only around the domain
    assert sub_grid.covers(emu.coarse_grid, 0.0) and (sub_grid.lon_bounds.max() - sub_grid.lon_bounds.min()) < 30
    downscale_files(tiny_bundle, [tmp_path / "in"], tmp_path / "out", chunk_days=30)
    for ref in reference.glob("*historical*.nc"):
        var = ref.name.split("_")[0]
        got = _open(tmp_path / "out" / ref.name)[var].values
        assert np.array_equal(got, _open(ref)[var].values, equal_nan=True), ref.name


def test_input_not_covering_domain_plus_halo_is_refused(tmp_path, tiny_bundle):
    for var in ("tas", "pr"):  # covers the domain, but only 1 deg of the 2.8 deg halo to the north and south
        ds = _global(var, days=40)
        _write(ds.sel(lat=slice(33.0, 45.5)), tmp_path / "in" / f"{var}_day_CNRM-CM5_historical_r1i1p1_gn_1982.nc")
    text = invoke("apply", tiny_bundle, tmp_path / "in", "-o", tmp_path / "out", "--no-progress", code=2)
    assert "does not cover the emulator's domain plus a halo of 2.8125 degrees" in text and "Fix:" in text
    assert "variable 'tas'" in text and "--halo" in text
    invoke("apply", tiny_bundle, tmp_path / "in", "-o", tmp_path / "out", "--halo", "0.5", "--no-progress")
    emu = downscale.load(tiny_bundle)
    with pytest.raises(GridMismatchError):
        check_covers(Grid.from_dataset(_open(next((tmp_path / "in").glob("tas_*")))), emu.coarse_grid, 3.0)


# ------------------------------------------------------------------------------------------- plev, calendars
def _ta_plev(levels: tuple[int, ...], days: int = DAYS) -> xr.Dataset:
    """``ta`` on plev (Pa) from the 850 hPa file: other levels are 850 hPa minus 6 K per 100 hPa."""
    src = _open(_src("ta850")).isel(time=slice(0, days))
    ta = src["ta"].drop_vars("plev")
    da = xr.concat([ta + (p - 85000) / 10000.0 * 6.0 for p in levels], dim="plev")
    plev = xr.Variable("plev", np.array(levels, float), {"units": "Pa", "standard_name": "air_pressure", "axis": "Z"})
    da = da.assign_coords(plev=plev).transpose("time", "plev", "lat", "lon").astype(np.float32)
    out = xr.Dataset({"ta": da.assign_attrs(ta.attrs)}, attrs=src.attrs)
    out["time"].encoding.update(src["time"].encoding)
    return out


def test_plev_input_gives_ta850(tmp_path, plev_bundle):
    emu = downscale.load(plev_bundle)
    assert emu.predictors == ["tas", "pr", "ta850"]
    _small(tmp_path / "single", ("tas", "pr", "ta850"), ("historical",))
    _small(tmp_path / "plev", ("tas", "pr"), ("historical",))
    _write(_ta_plev((85000, 50000)), tmp_path / "plev" / "ta_day_CNRM-CM5_historical_r1i1p1_gn_1982-1983.nc")
    downscale_files(plev_bundle, [tmp_path / "single"], tmp_path / "a", chunk_days=30)
    downscale_files(plev_bundle, [tmp_path / "plev"], tmp_path / "b", chunk_days=30)
    _same(tmp_path / "a", tmp_path / "b")
    # a missing pressure level is one clean line
    (tmp_path / "plev" / "ta_day_CNRM-CM5_historical_r1i1p1_gn_1982-1983.nc").unlink()
    _write(_ta_plev((70000, 50000)), tmp_path / "plev" / "ta_day_CNRM-CM5_historical_r1i1p1_gn_1982-1983.nc")
    text = invoke("apply", plev_bundle, tmp_path / "plev", "-o", tmp_path / "c", "--no-progress", code=2)
    assert "no level 850 hPa" in text and "ta_day_CNRM-CM5" in text and "700, 500 hPa" in text and "Fix:" in text


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_calendar_is_preserved(tmp_path, tiny_bundle, calendar):
    import cftime

    src = _open(_src("tas")).isel(time=slice(0, 60))
    day = 30 if calendar == "360_day" else 31
    times = [
        cftime.datetime(1982, 12, 1, 12, calendar=calendar) + __import__("datetime").timedelta(days=i)
        for i in range(60)
    ]
    assert times[day].month == 1
    for var in ("tas", "pr"):
        ds = _open(_src(var)).isel(time=slice(0, 60)).drop_vars("time_bnds").assign_coords(time=times)
        ds["time"].encoding = {"units": "days since 1850-01-01", "calendar": calendar}
        _write(ds, tmp_path / "in" / f"{var}_day_CNRM-CM5_historical_r1i1p1_19821201-19830129.nc")
    downscale_files(tiny_bundle, [tmp_path / "in"], tmp_path / "out")
    for path in (tmp_path / "out").glob("*.nc"):
        ds = _open(path)
        assert ds["time"].encoding["calendar"] == calendar and ds.sizes["time"] == 60
        assert str(ds["time"].values[-1])[:10] == str(times[-1])[:10]
    assert src.sizes["time"] == 60


# ------------------------------------------------------------------------------------------- resumption
def _log(out: Path, what: str) -> list[str]:
    log = out / ".downscale-apply.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line.split(what, 1)[1].strip() for line in lines if what in line]


def test_killed_run_resumes_without_recomputing_and_identically(tmp_path, tiny_bundle, small, reference):
    """SIGKILL once an rcp85 chunk is stored (the historical files are written or being written); the re-run
    keeps what is finished, computes only the rest, and its outputs are bit-identical to an uninterrupted run."""
    out = tmp_path / "out"
    # the run is slowed down through apply's chunk hook, so that it can be killed half-way
    script = (
        "import sys, time\n"
        "from downscale.apply import downscale_files\n"
        "downscale_files(sys.argv[1], [sys.argv[2]], sys.argv[3], chunk_days=30,"
        " on_chunk=lambda *chunk: time.sleep(0.3))\n"
    )
    cmd = [sys.executable, "-c", script, str(tiny_bundle), str(small), str(out)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".downscale-work/*/2080*/c*.npy")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        for p in out.glob("*.nc"):  # never a partial file under a final name
            assert _open(p).load().sizes["time"] == DAYS
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = _log(out, "computed chunk")
    assert (out / ".downscale-output.lock").is_file()  # left behind by the killed run: stale
    finals = list(out.glob("*.nc"))  # the historical files may be written (by the writer thread) or not yet
    assert all("historical" in p.name and _open(p).sizes["time"] == DAYS for p in finals)
    warned: list[str] = []
    result = downscale_files(tiny_bundle, [small], out, chunk_days=30, warn=warned.append)
    assert any("taking over the stale lock" in w for w in warned)
    second, reused = _log(out, "computed chunk")[len(first) :], _log(out, "reused chunk")
    assert result.reused == len(reused) >= 1 and result.computed == len(second)  # at least the rcp85 chunk
    assert not set(second) & (set(first) | set(reused))  # nothing finished is computed again
    every = {f"CNRM-CM5_{e}_r1i1p1 {a}-{a + 30}" for e in ("historical", "rcp85") for a in (0, 30)}
    assert set(first) | set(second) | set(reused) == every and result.kept == (2 if len(finals) == 2 else 0)
    assert not (out / ".downscale-output.lock").exists() and not (out / ".downscale-work").exists()
    _same(out, reference)


def test_second_run_keeps_finished_files(tmp_path, tiny_bundle, small, reference):
    import shutil

    shutil.copytree(reference, tmp_path / "out")
    result = downscale_files(tiny_bundle, [small], tmp_path / "out", chunk_days=30)
    assert result.computed == 0 and result.kept == 4


def test_a_file_of_the_users_under_an_output_name_is_never_replaced(tmp_path, tiny_bundle, small, reference):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference, out)
    victim = sorted(out.glob("*.nc"))[0]
    victim.write_bytes(b"my own analysis")  # the user's file, under the name this run would write
    from downscale.errors import DownscaleError

    with pytest.raises(DownscaleError, match="did not write has the name of an output"):
        downscale_files(tiny_bundle, [small], out, chunk_days=30)
    assert victim.read_bytes() == b"my own analysis"


def test_a_finished_apply_folder_takes_another_run_and_is_marked(tmp_path, tiny_bundle, small):
    import json

    from downscale.outdir import MARKER

    out = tmp_path / "out"
    downscale_files(tiny_bundle, [small], out, chunk_days=60)
    marker = json.loads((out / MARKER).read_text())
    assert marker["verb"] == "apply" and marker["status"] == "complete" and marker["files"] == 4
    result = downscale_files(tiny_bundle, [small], out, chunk_days=60)  # the same batch again: nothing to do
    assert result.kept == 4 and result.computed == 0
    assert json.loads((out / MARKER).read_text())["created"] == marker["created"]


def test_concurrent_run_is_refused_and_a_stale_lock_taken_over(tmp_path, tiny_bundle, small):
    import json
    import socket

    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        lock = out / ".downscale-output.lock"
        lock.write_text(
            json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": "earlier", "verb": "apply"})
        )
        text = invoke("apply", tiny_bundle, small, "-o", out, "--no-progress", code=2)
        assert "another 'downscale apply' is writing to this output" in text
        assert f"pid {other.pid}" in text and "Fix:" in text and not list(out.glob("*.nc"))
    finally:
        other.kill()
        other.wait()
    text = invoke("apply", tiny_bundle, small, "-o", out, "--no-progress", "--chunk-days", "60")
    assert "taking over the stale lock" in text and len(list(out.glob("*.nc"))) == 4


@pytest.mark.timeout(120)
def test_local_cluster_gives_identical_output(tmp_path, tiny_bundle, small, reference):
    pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'downscale[distributed]')"
    )
    result = downscale_files(tiny_bundle, [small], tmp_path / "out", chunk_days=30, scheduler="local:2")
    assert result.computed == 4 and len(result) == 4
    _same(tmp_path / "out", reference)


# ------------------------------------------------------------------------------------------- members, API
def test_members_dimension(tmp_path, tiny_bundle, small):
    downscale_files(tiny_bundle, [small], tmp_path / "out", chunk_days=30, members=2)
    ds = _open(next((tmp_path / "out").glob("tas_*historical*.nc")))
    assert ds["tas"].dims == ("time", "member", "rlat", "rlon") and ds.sizes["member"] == 2
    assert ds.attrs["downscale_members"] == 2
    emu = downscale.load(tiny_bundle)
    lazy = emu.downscale(
        xr.merge([_open(_src(v)).isel(time=slice(0, DAYS))[v] for v in ("tas", "pr")]), members=2, chunk_days=30
    )
    np.testing.assert_array_equal(lazy["tas"].values, ds["tas"].values)


def test_python_api_is_lazy_and_matches_the_cli(tiny_bundle, small, reference):
    emu = downscale.load(tiny_bundle)
    from downscale.data.io import open_dataset

    ds = xr.merge([open_dataset(next(small.glob(f"{v}_*historical*")))[v] for v in ("tas", "pr")])
    fine = emu.downscale(ds, chunk_days=30)
    assert fine["tas"].chunks is not None and fine["tas"].data.numblocks[0] == 2  # nothing computed yet
    fine = fine.load()
    (ref,) = reference.glob("pr_*historical*.nc")
    assert np.array_equal(fine["pr"].values, _open(ref)["pr"].values, equal_nan=True)
    assert "predictors: tas [K], pr [kg m-2 s-1]" in emu.describe()


# ------------------------------------------------------------------------------------------- sanity
@pytest.fixture(scope="module")
def narrow_bundle(tmp_path_factory, tiny_bundle) -> Path:
    """tiny_bundle re-saved with a plausible range of tas that its output leaves (285..290 K)."""
    from downscale.bundle import load_bundle, save_bundle

    b = load_bundle(tiny_bundle)
    b.meta.targets[0].plausible = (285.0, 290.0)
    out = tmp_path_factory.mktemp("narrow") / "bundle"
    save_bundle(out, b)
    return out


def test_implausible_output_stops_the_run(tmp_path, narrow_bundle, small):
    text = invoke("apply", narrow_bundle, small, "-o", tmp_path / "out", "--no-progress", code=2)
    assert "variable 'tas': implausible downscaled tas (too " in text and "plausible range 285..290 K" in text
    assert re.search(
        r"\(too (?:high|low)\): [\d.]+ K on 198[23]-\d\d-\d\d at cell \(rlat \d+, rlon \d+; lat \d+\.\d\d, lon -?\d+\.\d\d\)",
        text,
    )
    assert "--on-implausible warn" in text and not list((tmp_path / "out").glob("*.nc"))


def test_implausible_output_is_written_and_flagged_with_warn(tmp_path, narrow_bundle, small):
    text = invoke("apply", narrow_bundle, small, "-o", tmp_path / "out", "--no-progress", "--on-implausible", "warn")
    assert "warning:" in text and "implausible downscaled tas" in text and "implausible values flagged" in text
    ds = _open(next((tmp_path / "out").glob("tas_*historical*.nc")))
    assert ds.attrs["downscale_sanity"].startswith("FLAGGED") and "on 198" in ds["tas"].attrs["downscale_implausible"]
    assert list(ds["tas"].attrs["downscale_plausible_range"]) == [285.0, 290.0]
    pr = _open(next((tmp_path / "out").glob("pr_*historical*.nc")))
    assert "downscale_implausible" not in pr["pr"].attrs and pr.attrs["downscale_sanity"].startswith("passed")


# ------------------------------------------------------------------------------------------- errors
def test_error_missing_variable(tmp_path, tiny_bundle):
    _small(tmp_path / "in", ("tas",), ("historical",), days=40)
    text = invoke("apply", tiny_bundle, tmp_path / "in", "-o", tmp_path / "out", "--no-progress", code=2)
    assert "no variable 'pr'" in text and "tas_day_CNRM-CM5" in text and "Fix:" in text


def test_error_units_not_convertible(tmp_path, tiny_bundle):
    _small(tmp_path / "in", ("pr",), ("historical",), days=40)
    ds = _open(_src("tas")).isel(time=slice(0, 40))
    ds["tas"].attrs["units"] = "m s-1"
    _write(ds, tmp_path / "in" / _src("tas").name)
    text = invoke("apply", tiny_bundle, tmp_path / "in", "-o", tmp_path / "out", "--no-progress", code=2)
    assert "variable 'tas'" in text and "'m s-1'" in text and "cannot be converted" in text and "Fix:" in text


def test_error_monthly_inputs(tmp_path, tiny_bundle):
    for var in ("tas", "pr"):
        ds = _open(_src(var)).drop_vars("time_bnds").isel(time=slice(0, 300)).resample(time="MS").mean()
        ds.attrs = _open(_src(var)).attrs | {"frequency": "mon"}
        _write(ds, tmp_path / "in" / f"{var}_Amon_CNRM-CM5_historical_r1i1p1_198212-198402.nc")
    text = invoke("apply", tiny_bundle, tmp_path / "in", "-o", tmp_path / "out", "--no-progress", code=2)
    assert "inputs are monthly (mon)" in text and "expected day" in text and "Fix:" in text


def test_error_output_folder_not_writable(tmp_path, tiny_bundle, small):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from downscale.errors import DownscaleError

    text = invoke("apply", tiny_bundle, small, "-o", blocker / "out", "--no-progress", code=2)
    assert "the output folder cannot be created: a file stands where a folder is needed" in text and "Fix:" in text
    with pytest.raises(DownscaleError, match="the output exists and is a file"):
        downscale_files(tiny_bundle, [small], blocker)
    assert blocker.read_text() == "x"


def test_error_target_grid_mismatch(tmp_path, tiny_bundle, small):
    other = (
        ROOT
        / "examples"
        / "data"
        / "grids"
        / "tas_EUR-22_MPI-M-MPI-ESM-LR_rcp85_r1i1p1_GERICS-REMO2015_v1_mon_202101.nc"
    )
    text = invoke("apply", tiny_bundle, small, "-o", tmp_path / "out", "--target-grid", other, "--no-progress", code=2)
    assert "does not match the emulator's fine grid" in text and "rotated_pole 28x30" in text and "Fix:" in text
    same = next(CORDEX.glob("tas_*historical*.nc"))
    invoke("apply", tiny_bundle, small, "-o", tmp_path / "out", "--target-grid", same, "--no-progress")


# ------------------------------------------------------------------------------------------- inputs on two grids
NCEP = ROOT / "examples" / "data" / "iberia" / "ncep"
EOBS = ROOT / "examples" / "data" / "iberia" / "eobs"
NCEP_DAYS = 40


def _ncep(var: str) -> Path:
    grid = "T62" if var in ("tas", "pr") else "2.5deg"
    return NCEP / f"{var}_day_NCEP-NCAR-R1_{grid}_DJF1983-2002.nc"


@pytest.fixture(scope="module")
def ncep_bundle(tmp_path_factory) -> Path:
    """A tiny NCEP -> E-OBS bundle (as recipes/emulator-iberia.yaml): tas and pr on T62 (the coarse grid), psl on
    the 2.5 deg grid, and the RACMO orography (an ``orog_EUR-44_...`` file) regridded onto E-OBS as static field."""
    from downscale.train.run import train

    folder = tmp_path_factory.mktemp("ncep")
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"""
name: tiny-ncep
framework: emulator
data:
  predictors:
    tas: {_ncep("tas")}
    pr: {_ncep("pr")}
    psl: {_ncep("psl")}
  targets:
    tas: {EOBS}/tas_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc
    pr: {EOBS}/pr_day_E-OBS-v14_0.50deg-reg_DJF1983-2002.nc
  static:
    orog: {CORDEX}/orog_EUR-44_Iberia-subset_derived-from-HSURF-0.11deg_fx.nc
  static_regrid: bilinear
  coarse_grid: {_ncep("tas")}
  regrid: bilinear
  forcings: [season]
  periods:
    train: {{season: DJF, years: [1983, 1983]}}
model: {{type: simple_cnn, width: 8, coarse_blocks: 1, fine_blocks: 1}}
train: {{epochs: 1, batch_size: 32}}
""")
    train(recipe, folder / "bundle", progress=False)
    return folder / "bundle"


def _ncep_inputs(folder: Path, psl_lat: tuple[float, float] | None = None) -> Path:
    for var in ("tas", "pr", "psl"):
        ds = _open(_ncep(var)).isel(time=slice(0, NCEP_DAYS))
        if var == "psl" and psl_lat is not None:
            ds = ds.sel(lat=slice(*psl_lat))
        _write(ds, folder / _ncep(var).name)
    return folder


@pytest.mark.parametrize("halo", ["0", "1"])
def test_predictors_on_two_grids_are_each_checked_and_regridded_on_their_own(tmp_path, ncep_bundle, halo):
    """tas and pr on T62 are taken as they are, psl (2.5 deg) is cut and regridded: no input is refused at
    --halo 1 (the T62 files were), and there is no NaN where the output is valid (psl was NaN at --halo 0)."""
    inputs = _ncep_inputs(tmp_path / "in")
    invoke("apply", ncep_bundle, inputs, "-o", tmp_path / "out", "--halo", halo, "--no-progress")
    emu = downscale.load(ncep_bundle)
    outs = _outputs(tmp_path / "out")
    assert sorted(n.split("_")[0] for n in outs) == ["pr", "tas"]
    valid = np.broadcast_to(emu.valid_mask, (len(emu.targets), *emu.fine_grid.shape))
    for name, ds in outs.items():
        var = name.split("_")[0]
        assert name.startswith(f"{var}_grid-{emu.fine_grid.id[:8]}_")  # not EUR-44: the targets are E-OBS
        values = ds[var].values
        assert values.shape[0] == NCEP_DAYS and valid.any()
        assert np.isfinite(values[:, valid[emu.targets.index(var)]]).all(), name
    # the same through the Python API: one dataset per grid; the T62 predictors are used unchanged
    t62 = xr.merge([_open(inputs / _ncep(v).name)[[v]] for v in ("tas", "pr")])
    x = emu.coarse_fields([t62, _open(inputs / _ncep("psl").name)], halo=float(halo))
    assert np.allclose(x.sel(channel="tas").values, t62["tas"].values + 273.15, atol=1e-3)  # degC -> K only
    assert np.isfinite(x.values).all()


def test_coverage_is_checked_for_inputs_not_on_the_coarse_grid_only(tmp_path, ncep_bundle):
    inputs = _ncep_inputs(tmp_path / "in")
    # the default halo (2 T62 cells, 3.8 deg) is more than the regional 2.5 deg file has: psl is named, not tas
    text = invoke("apply", ncep_bundle, inputs, "-o", tmp_path / "out", "--no-progress", code=2)
    assert "variable 'psl'" in text and "halo of 3.8" in text and "tas_day" not in text
    # psl without its southern row does not cover the domain even at --halo 0
    short = _ncep_inputs(tmp_path / "short", psl_lat=(37.0, 46.0))
    text = invoke("apply", ncep_bundle, short, "-o", tmp_path / "out2", "--halo", "0", "--no-progress", code=2)
    assert "does not cover the emulator's domain" in text and "variable 'psl'" in text


def test_output_domain_comes_from_the_target_files(tiny_bundle, ncep_bundle):
    """CORDEX targets name the domain (EUR-44); E-OBS targets do not, whatever other files of the bundle are
    called (its static orography comes from an orog_EUR-44_... file): the fine grid names it then."""
    from downscale.apply.store import domain_name

    cordex, eobs = downscale.load(tiny_bundle), downscale.load(ncep_bundle)
    assert domain_name(cordex.meta, cordex.fine_grid.id) == "EUR-44"
    assert any("EUR-44" in str(f) for f in eobs.meta.provenance["files"])
    assert domain_name(eobs.meta, eobs.fine_grid.id) == f"grid-{eobs.fine_grid.id[:8]}"
    assert domain_name(eobs.meta.model_copy(update={"domain": "Iberia 0.5"}), eobs.fine_grid.id) == "Iberia-0.5"


@pytest.mark.parametrize("fault", ["negative_pr", "degc_as_k", "duplicate_day"])
def test_implausible_inputs_stop_apply_with_one_line_and_no_output(tmp_path, tiny_bundle, fault):
    """Issue 12 through the CLI: what `apply` once accepted silently (pr all zero, tas shifted; a day dropped)
    is one line naming the file, the variable and the date, exit 2, and no output folder is left."""
    folder = _small(tmp_path / "in", experiments=("historical",))
    var = "pr" if fault == "negative_pr" else "tas"
    path = folder / _src(var).name
    ds = _open(path)
    if fault == "negative_pr":
        ds["pr"][3, 2, 2] = -5e-5
        what = ["negative precipitation", "variable 'pr'", "1982-12-04"]
    elif fault == "degc_as_k":
        ds["tas"] = (ds["tas"] - 273.15).assign_attrs(ds["tas"].attrs)
        what = ["variable 'tas'", "°C labelled 'K'?"]
    else:
        ds = xr.concat([ds.isel(time=slice(0, 8)), ds.isel(time=[7]), ds.isel(time=slice(8, None))], "time")
        what = ["duplicate time stamp", "1982-12-08"]
    path.unlink()
    _write(ds, path)
    out = tmp_path / "out"
    text = invoke("apply", tiny_bundle, folder, "-o", out, "--no-progress", code=2)
    assert text.startswith("error:") and path.name in text and "Fix:" in text, text
    for part in what:
        assert part in text, text
    assert not out.exists()
