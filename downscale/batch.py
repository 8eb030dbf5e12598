"""``downscale apply``: downscale files of a GCM projection with a bundle.

Inputs are files, globs or directories; one file may hold several variables
and a variable may span many files.  The emulator's predictors are picked out,
converted to canonical units and, where needed, regridded to its coarse grid.
One CF-compliant NetCDF per target variable is written, its name starting with
the variable (``tas_...nc``).  Files appear under their final name only when
complete (written to a hidden temporary name, then renamed).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from downscale.errors import DataError, GridMismatchError

__all__ = ["downscale_files", "output_name"]

_DRS_KEYS = {
    "model": ("driving_model_id", "source_id", "model_id"),
    "experiment": ("driving_experiment_name", "experiment_id", "experiment"),
    "member": ("driving_model_ensemble_member", "variant_label", "ensemble_member", "parent_experiment_rip"),
}


def _attr(attrs: dict[str, Any], keys: Sequence[str], default: str) -> str:
    for key in keys:
        value = str(attrs.get(key, "")).strip()
        if value:
            return re.sub(r"[^A-Za-z0-9.+-]", "-", value)
    return default


def _date(t: Any) -> str:
    return f"{t.year:04d}{t.month:02d}{t.day:02d}"


def output_name(variable: str, emulator_name: str, attrs: dict[str, Any], time: xr.DataArray) -> str:
    """CORDEX-style file name: ``<var>_<model>_<experiment>_<member>_<emulator>_day_<start>-<end>.nc``."""
    model = _attr(attrs, _DRS_KEYS["model"], "unknown-model")
    experiment = _attr(attrs, _DRS_KEYS["experiment"], "unknown-experiment")
    member = _attr(attrs, _DRS_KEYS["member"], "r0i0p0")
    emulator = re.sub(r"[^A-Za-z0-9.+-]", "-", emulator_name)
    values = time.values
    return f"{variable}_{model}_{experiment}_{member}_downscale-{emulator}_day_{_date(values[0])}-{_date(values[-1])}.nc"


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder ({exc.strerror})", file=out_dir, fix="choose a writable -o folder") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DataError("the output folder is not writable", file=out_dir, fix="choose a writable -o folder")


def _encoding(ds: xr.Dataset, calendar: str | None, units: str | None) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if var.ndim >= 2:
            enc[name] = {"zlib": True, "complevel": 4, "shuffle": True, "dtype": "float32", "_FillValue": 1.0e20}
        else:
            enc[name] = {"_FillValue": None}
    for name in ds.coords:
        enc[str(name)] = {"_FillValue": None}
    enc["time"] = {
        "units": units or "days since 1950-01-01",
        "calendar": calendar or "standard",
        "dtype": "float64",
        "_FillValue": None,
    }
    return enc


def downscale_files(
    bundle: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    target_grid: str | Path | None = None,
    scenario: str | None = None,
    chunk_days: int | None = None,
) -> list[Path]:
    """Downscale the projection in ``inputs`` with ``bundle``; return the written files."""
    from downscale.api import load
    from downscale.data.grids import Grid
    from downscale.data.io import expand_inputs, open_dataset

    emu = load(bundle)
    out_dir = Path(out_dir)
    if target_grid is not None:
        grid = Grid.from_dataset(open_dataset(target_grid), file=target_grid)
        if grid.id != emu.fine_grid.id:
            raise GridMismatchError(
                "the target grid does not match the emulator's fine grid",
                file=target_grid,
                found=grid.describe(),
                expected=emu.fine_grid.describe(),
                fix="use an emulator trained for this grid, or regrid its output afterwards",
            )
    _check_writable(out_dir)
    groups: dict[tuple[str, str, str], list[Path]] = {}
    for path in expand_inputs(inputs):
        attrs = open_dataset(path).attrs
        key = tuple(_attr(attrs, _DRS_KEYS[k], "") for k in ("model", "experiment", "member"))
        groups.setdefault(key, []).append(path)
    written: list[Path] = []
    for files in groups.values():
        written += _downscale_group(emu, files, out_dir, bundle, scenario=scenario, chunk_days=chunk_days)
    return written


def _downscale_group(
    emu: Any, files: list[Path], out_dir: Path, bundle: str | Path, *, scenario: str | None, chunk_days: int | None
) -> list[Path]:
    """One projection: the files of one model, experiment and member."""
    from downscale import __version__
    from downscale.data.calendar import calendar_of
    from downscale.data.io import open_dataset, open_variable

    fields, attrs, time_enc = {}, {}, {}
    for name in emu.predictors:
        da, _ = open_variable(files, name)
        fields[name] = da
        if not attrs:
            first = open_dataset(da.attrs.get("source_files", [files[0]])[0])
            attrs, time_enc = dict(first.attrs), dict(first["time"].encoding)
    ref = next(iter(fields.values()))
    ds = xr.Dataset({n: da.assign_coords(time=ref["time"].values) for n, da in fields.items()}, attrs=attrs)
    out = emu.downscale(ds, scenario=scenario, chunk_days=chunk_days or emu.meta["recipe"]["apply"]["chunk_days"])

    calendar = calendar_of(ref)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = f"{now}: downscale apply {Path(bundle).name} ({len(files)} input files); downscale {__version__}"
    if attrs.get("history"):
        history += "\n" + str(attrs["history"])
    written = []
    for name in emu.targets:
        keep = [name] + [v for v in out.data_vars if v not in emu.targets]
        ds_var = out[keep]
        ds_var.attrs = {
            "Conventions": "CF-1.8",
            "title": f"{name} downscaled by the {emu.name} emulator",
            "history": history,
            "source": f"downscale {__version__} emulator '{emu.name}'",
            "downscale_bundle_id": emu.id,
            "downscale_emulator": emu.name,
            "driving_model_id": _attr(attrs, _DRS_KEYS["model"], "unknown"),
            "driving_experiment_name": _attr(attrs, _DRS_KEYS["experiment"], "unknown"),
            "driving_model_ensemble_member": _attr(attrs, _DRS_KEYS["member"], "unknown"),
            "frequency": "day",
        }
        ds_var["time"].attrs.update({"standard_name": "time", "long_name": "time", "axis": "T"})
        final = out_dir / output_name(name, emu.name, attrs, ds_var["time"])
        tmp = final.with_name(f".{final.name}.part")
        ds_var.to_netcdf(tmp, encoding=_encoding(ds_var, calendar, time_enc.get("units")), engine="netcdf4")
        os.replace(tmp, final)
        written.append(final)
    return written
