"""SYNTHETIC hourly test data -- NOT model output, NOT observations.

Builds hourly near-surface temperature (``tas``) on the RACMO22E EUR-44 Iberia grid (rotated pole, 28x30) from
the bundled DAILY RACMO data (``examples/data/iberia/cordex/tas_*historical*.nc``), for a short span (by default
the two winter months December 1982 and January 1983):

* the daily means, interpolated linearly in time between their 12:00 stamps;
* plus a diurnal cycle per cell: amplitude growing with orography and falling with latitude, peaking at 15:00
  local solar time (UTC + longitude / 15 h), zero mean over the day;
* plus AR(1) noise per cell (lag-1 correlation 0.8, standard deviation 0.4 K), from a seeded generator.

The coarse predictors are the same fields upscaled onto the CNRM-CM5 grid of the bundled CMIP5 files with the
package's own regridding (``create_regridder(fine, coarse, "area_mean")``), so that the predictor at hour h is
the area mean of the target at hour h and of nothing else.

Both are written as CF NetCDF with ``frequency: 1hr``, hourly means stamped at the middle of their hour
(HH:30) with ``time_bnds`` spanning the hour.  The default output (62 days, seed 0) is committed beside this
script, for ``recipes/perfect-model-iberia-hourly.yaml``; ``python examples/data/iberia-hourly/make_hourly.py
OUT_DIR`` writes the same files again (bit for bit), and the tests call :func:`make` into a temporary folder for
shorter or shifted variants.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[3]
CORDEX = ROOT / "examples" / "data" / "iberia" / "cordex"
CMIP5 = ROOT / "examples" / "data" / "iberia" / "cmip5"
RACMO_TAS = next(CORDEX.glob("tas_*historical*.nc"))
OROG = next(CORDEX.glob("orog_*.nc"))
COARSE = next(CMIP5.glob("tas_day_*historical*.nc"))

FINE_NAME = "tas_EUR-44_SYNTHETIC-hourly-from-RACMO22E_1hr_{start}-{end}.nc"
COARSE_NAME = "tas_1hr_SYNTHETIC-area-mean-on-CNRM-CM5-grid_{start}-{end}.nc"
TIME_UNITS = "hours since 1949-12-01 00:00:00"


def _hourly_stamps(first: dt.date, days: int) -> np.ndarray:
    import cftime

    return np.array(
        [
            cftime.DatetimeGregorian(first.year, first.month, first.day, 0, 30) + dt.timedelta(hours=h)
            for h in range(24 * days)
        ],
        dtype=object,
    )


def synthetic_hourly(days: int = 62, seed: int = 0, first: dt.date = dt.date(1982, 12, 1)) -> xr.Dataset:
    """The fine hourly dataset (tas, time_bnds, the grid coordinates and the rotated pole) in memory."""
    from downscale.data.io import open_dataset

    ds = open_dataset(RACMO_TAS)
    daily = ds["tas"].load()
    dtimes = daily["time"].values
    start = next(i for i, t in enumerate(dtimes) if (t.year, t.month, t.day) == (first.year, first.month, first.day))
    # one day more on each side (where there is one) for the interpolation
    lo, hi = max(start - 1, 0), min(start + days + 1, dtimes.size)
    dvals = np.asarray(daily.isel(time=slice(lo, hi)).values, np.float64)  # (D, Y, X)
    dhours = np.array([(t - dtimes[start]).total_seconds() / 3600.0 for t in dtimes[lo:hi]])  # 12:00 stamps
    stamps = _hourly_stamps(first, days)
    hours = np.array([(t - dtimes[start]).total_seconds() / 3600.0 for t in stamps])
    flat = dvals.reshape(dvals.shape[0], -1)
    base = np.stack([np.interp(hours, dhours, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    base = base.reshape(hours.size, *dvals.shape[1:])

    orog = np.nan_to_num(np.asarray(open_dataset(OROG)["orog"].values, np.float64))
    lat = np.asarray(ds["lat"].values, np.float64)
    lon = np.asarray(ds["lon"].values, np.float64)
    amplitude = np.clip(3.0 + 2.5 * orog / 1000.0 - 0.08 * (lat - 40.0), 0.5, None)  # K, half the daily range
    peak_utc = 15.0 - lon / 15.0  # 15:00 local solar time
    utc = np.array([t.hour + t.minute / 60.0 for t in stamps])
    diurnal = amplitude[None] * np.cos(2.0 * np.pi * (utc[:, None, None] - peak_utc[None]) / 24.0)

    rng = np.random.default_rng(seed)
    phi, sigma = 0.8, 0.4
    noise = np.empty_like(base)
    noise[0] = rng.normal(0.0, sigma, base.shape[1:])
    for t in range(1, hours.size):
        noise[t] = phi * noise[t - 1] + np.sqrt(1.0 - phi**2) * rng.normal(0.0, sigma, base.shape[1:])

    tas = (base + diurnal + noise).astype(np.float32)
    out = ds.drop_vars(["tas", "time_bnds", "time"], errors="ignore").drop_dims("time", errors="ignore")
    out = out.assign_coords(time=("time", stamps, {"standard_name": "time", "axis": "T", "bounds": "time_bnds"}))
    out["tas"] = xr.DataArray(tas, dims=("time", *daily.dims[1:]), attrs=dict(daily.attrs))
    out["tas"].attrs["cell_methods"] = "time: mean"
    out["time_bnds"] = (("time", "bnds"), _bounds(stamps, 1.0))
    out.attrs = {
        **{k: v for k, v in ds.attrs.items() if k in ("project_id", "CORDEX_domain", "driving_model_id")},
        "title": "SYNTHETIC hourly tas built from daily RACMO22E means (diurnal cycle + AR(1) noise); test data only",
        "frequency": "1hr",
        "comment": f"SYNTHETIC: examples/data/iberia-hourly/make_hourly.py, seed {seed}; not model output",
        "Conventions": "CF-1.8",
    }
    return out


def _bounds(stamps: np.ndarray, hours: float) -> np.ndarray:
    half = dt.timedelta(hours=hours / 2.0)
    return np.stack([stamps - half, stamps + half], axis=1)


def upscale(fine: xr.Dataset) -> xr.Dataset:
    """The fine dataset's tas as area means on the coarse (CNRM-CM5) grid, as a CF dataset."""
    from downscale.data.grids import Grid
    from downscale.data.io import open_dataset
    from downscale.data.regrid import create_regridder

    coarse_ds = open_dataset(COARSE)
    fine_grid = Grid.from_dataset(fine, file=RACMO_TAS)
    coarse_grid = Grid.from_dataset(coarse_ds, file=COARSE)
    up = create_regridder(fine_grid, coarse_grid, "area_mean")(fine["tas"])
    up = up.reset_coords(drop=True).astype(np.float32)
    out = coarse_ds.drop_vars(list(coarse_ds.data_vars)).drop_dims("time", errors="ignore")
    out = out.drop_vars([c for c in out.coords if "time" in out[c].dims], errors="ignore")
    out = out.assign_coords(time=fine["time"])
    out["tas"] = xr.DataArray(np.asarray(up.values), dims=up.dims, attrs=dict(fine["tas"].attrs))
    out["tas"].attrs.pop("grid_mapping", None)
    out["time_bnds"] = fine["time_bnds"]
    out.attrs = {
        "title": "SYNTHETIC hourly tas: area means of the synthetic RACMO22E-grid field on the CNRM-CM5 grid",
        "frequency": "1hr",
        "comment": "SYNTHETIC: examples/data/iberia-hourly/make_hourly.py; not model output",
        "Conventions": "CF-1.8",
        # what downscale apply names its outputs by (model, experiment, member)
        "model_id": "SYNTHETIC-hourly-RACMO22E",
        "experiment_id": "historical",
        "ensemble_member": "r1i1p1",
    }
    return out


def write(ds: xr.Dataset, path: Path) -> Path:
    enc = {v: {"_FillValue": None} for v in ds.variables}
    enc["time"] = {"units": TIME_UNITS, "calendar": "standard", "dtype": "float64", "_FillValue": None}
    enc["time_bnds"] = {"units": TIME_UNITS, "calendar": "standard", "dtype": "float64", "_FillValue": None}
    enc["tas"] = {"zlib": True, "complevel": 1, "_FillValue": None, "dtype": "float32"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # written whole, then renamed: a reader never sees half a file
    ds.to_netcdf(tmp, encoding=enc)
    tmp.replace(path)
    return path


def make(out_dir: str | Path, days: int = 62, seed: int = 0) -> tuple[Path, Path]:
    """Write the fine (targets) and coarse (predictors) hourly files into ``out_dir``; return their paths."""
    fine = synthetic_hourly(days=days, seed=seed)
    coarse = upscale(fine)
    t = fine["time"].values
    span = {"start": f"{t[0]:%Y%m%d%H%M}", "end": f"{t[-1]:%Y%m%d%H%M}"}
    out = Path(out_dir)
    return write(fine, out / FINE_NAME.format(**span)), write(coarse, out / COARSE_NAME.format(**span))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--days", type=int, default=62, help="days from 1982-12-01 (default: Dec 1982 + Jan 1983)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in make(args.out_dir, days=args.days, seed=args.seed):
        print(path)


if __name__ == "__main__":
    main()
