"""Where ``downscale apply`` keeps its state: the lock, the work folder of finished chunks, the output files.

Layout under the output folder ``OUTDIR``::

    OUTDIR/
      tas_EUR-44_CNRM-CM5_rcp85_r1i1p1_downscale-<emulator>_day_20060101-20151231.nc   final files only
      .downscale-output.json         the folder's marker (downscale.outdir: verb apply, status, times)
      .downscale-output.lock         pid, host and start time of the run holding the folder (O_EXCL)
      .downscale-apply.log           one line per chunk computed or reused and per file written
      .downscale-work/<run>/<period>/c<start>-<stop>.npy   finished chunks (all targets), until assembled

``<run>`` is a hash of the bundle id, the options that change the numbers and the input files (path, size,
mtime): a re-run of the same command finds its chunks, a different command never reuses them.  Every file is
written under a hidden temporary name and renamed (``os.replace``) when complete, so a killed run leaves no
partial file under a final name, and a re-run recomputes nothing that was finished.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from downscale.apply.sanity import plausible_bounds
from downscale.atomic import TMP_GLOB, atomic_path, sha256_file, temporary_name, write_atomic
from downscale.bundle import BundleMeta
from downscale.errors import DataError

__all__ = ["assemble", "chunk_done", "domain_name", "output_name", "read_chunk_meta", "write_chunk"]

LOG_NAME = ".downscale-apply.log"
WORK_NAME = ".downscale-work"


def log_line(out_dir: Path, text: str) -> None:
    """Append one line to the run log of the output folder (for people, and the resumption tests)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    with open(Path(out_dir) / LOG_NAME, "a") as fh:
        fh.write(f"{stamp} pid {os.getpid()} {text}\n")


# ------------------------------------------------------------------------------------------- chunks
def chunk_path(period_dir: Path, start: int, stop: int) -> Path:
    return Path(period_dir) / f"c{start:09d}-{stop:09d}.npy"


def write_chunk(path: Path, y: np.ndarray, meta: dict[str, Any]) -> None:
    """Write a finished chunk atomically: the data to a hidden name, then its metadata (.json, with the sha256
    of the data file), then the data renamed to its final name (.npy), which marks it done."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(y, np.float32))
        write_atomic(path.with_suffix(".json"), json.dumps({**meta, "sha256": sha256_file(tmp)}))


def chunk_done(path: Path, shape: tuple[int, ...], warn: Callable[[str], None] | None = None) -> bool:
    """Whether a chunk file is finished, has the expected shape and the checksum recorded when it was written.
    A chunk that exists but fails a check (edited, truncated, no checksum) is to be recomputed: ``warn`` is told."""
    if not path.is_file() or not path.with_suffix(".json").is_file():
        return False

    def bad(why: str) -> bool:
        if warn is not None:
            warn(f"recomputing chunk {path}: {why}")
        return False

    try:
        meta = read_chunk_meta(path)
    except (OSError, ValueError):
        return bad("its record (.json) is unreadable")
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        return bad("its record (.json) has no checksum")
    try:
        found = tuple(np.load(path, mmap_mode="r").shape)
    except (OSError, ValueError):
        return bad("the data file is unreadable (truncated?)")
    if found != tuple(shape):
        return bad(f"shape {list(found)}, expected {list(shape)}")
    if sha256_file(path) != meta["sha256"]:
        return bad("its data do not match the checksum recorded when it was written (edited or truncated)")
    return True


def read_chunk_meta(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())


def clean_tmp(folder: Path) -> None:
    """Remove temporary files left by killed runs (called while holding the lock)."""
    if folder.is_dir():
        for p in folder.rglob(TMP_GLOB):
            with contextlib.suppress(OSError):
                p.unlink()
    for p in Path(folder).parent.glob(TMP_GLOB):
        with contextlib.suppress(OSError):
            p.unlink()


# ------------------------------------------------------------------------------------------- outputs
_CORDEX_DOMAIN = re.compile(r"^[A-Z]{3}-\d{2}i?$")


def domain_name(meta: BundleMeta, grid_id: str) -> str:
    """The domain token of output names: the bundle's ``domain``, else the CORDEX domain in the file names of its
    training *targets* (``EUR-44``; the outputs are on their grid), else ``grid-<id>`` of the fine grid.  Other
    files of the bundle (predictors, static fields such as an ``orog_EUR-44_...`` regridded onto E-OBS, other
    sources) do not name the output grid and are not looked at."""
    if meta.domain:
        return re.sub(r"[^A-Za-z0-9.+-]", "-", meta.domain)
    for name in _target_file_names(meta):
        parts = name.split("_")
        if len(parts) > 2 and _CORDEX_DOMAIN.match(parts[1]):
            return parts[1]
    return f"grid-{grid_id[:8]}"


def _target_file_names(meta: BundleMeta) -> list[str]:
    """File names (or glob patterns) of the bundle's training targets: from its recipe, else the provenance
    files named after a target variable (``tas_...``)."""
    targets = (meta.recipe.get("data") or {}).get("targets") or {}
    names = []
    for paths in targets.values() if isinstance(targets, dict) else []:
        for path in [paths] if isinstance(paths, str) else paths or []:
            names.append(Path(str(path)).name)
    if names:
        return names
    variables = set(meta.target_names)
    files = [Path(f).name for f in meta.source_files]
    return [f for f in files if f.split("_")[0] in variables]


def output_name(
    variable: str, domain: str, key: tuple[str, str, str], emulator: str, label: str, frequency: str = "day"
) -> str:
    """``<var>_<domain>_<model>_<experiment>_<member>_downscale-<emulator>_<frequency>_<span>.nc``, the span
    ``YYYYMMDD-YYYYMMDD`` (``YYYYMMDDHHMM-YYYYMMDDHHMM`` for sub-daily files)."""
    emu = re.sub(r"[^A-Za-z0-9.+-]", "-", emulator)
    return f"{variable}_{domain}_{'_'.join(key)}_downscale-{emu}_{frequency}_{label}.nc"


def run_id_of(path: Path) -> str | None:
    """The ``downscale_run_id`` of a finished output file, or None."""
    if not Path(path).is_file():
        return None
    try:
        import netCDF4
        from xarray.backends.netCDF4_ import (
            NETCDF4_PYTHON_LOCK,  # HDF5 is not thread-safe: xarray's lock
        )

        with NETCDF4_PYTHON_LOCK, netCDF4.Dataset(path) as nc:
            return str(nc.getncattr("downscale_run_id"))
    except Exception:
        return None


@dataclass
class OutputSpec:
    """Everything needed to assemble the files of one period (picklable, for dask.distributed workers)."""

    bundle: str
    bundle_id: str
    run_id: str
    out_dir: str
    period_dir: str
    chunks: list[tuple[int, int]]  # global [start, stop) of each chunk, in order
    times: np.ndarray  # the period's days
    calendar: str
    time_units: str | None
    names: dict[str, str]  # target -> final file name
    attrs: dict[str, Any]  # global attributes of the outputs
    members: int | None
    complevel: int = 1


def _time_chunk(spec: OutputSpec, shape: tuple[int, int]) -> int:
    """HDF5 chunk length along time: a divisor of the chunk length (chunks are written whole, never
    re-read and re-compressed), at most ~8 MB."""
    days = max(b - a for a, b in spec.chunks)
    per_day = 4 * (spec.members or 1) * shape[0] * shape[1]
    fits = [d for d in range(1, days + 1) if days % d == 0 and d * per_day <= 8 << 20]
    return max(fits) if fits else 1


def _template(spec: OutputSpec, emu: Any, name: str, attrs: dict[str, Any], path: Path) -> None:
    """An output file with everything but the data: coordinates, grid mapping, attributes, the (empty,
    compressed) data variable.  The data are then written chunk by chunk."""
    import netCDF4
    import xarray as xr
    from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK

    grid = emu.fine_grid
    ds = grid.coords_dataset()
    ds = ds.assign_coords(
        time=xr.Variable("time", spec.times, {"standard_name": "time", "long_name": "time", "axis": "T"})
    )
    bounds = _subdaily_bounds(spec.times)
    if bounds is not None:  # sub-daily outputs: each step spans one step of the frequency, centred on its stamp
        ds["time"].attrs["bounds"] = "time_bnds"
        ds["time_bnds"] = xr.Variable(("time", "bnds"), bounds)
    if spec.members:
        ds = ds.assign_coords(
            member=xr.Variable(
                "member",
                np.arange(spec.members, dtype=np.int32),
                {"long_name": "ensemble member of the emulator", "standard_name": "realization"},
            )
        )
    ds.attrs = dict(spec.attrs)
    enc: dict[str, dict[str, Any]] = {str(v): {"_FillValue": None} for v in ds.variables}
    enc["time"] = {
        "units": spec.time_units or "days since 1850-01-01",
        "calendar": spec.calendar,
        "dtype": "float64",
        "_FillValue": None,
    }
    if bounds is not None:
        enc["time_bnds"] = {**enc["time"]}
    ds.to_netcdf(path, encoding=enc, engine="netcdf4")
    dims: list[str] = ["time", *(["member"] if spec.members else []), *map(str, grid.dims)]
    chunks: list[int] = [_time_chunk(spec, grid.shape), *([1] if spec.members else []), *map(int, grid.shape)]
    latlon = [str(c) for c in ds.coords if ds[c].ndim == 2]
    with NETCDF4_PYTHON_LOCK, netCDF4.Dataset(path, "a") as nc:
        if "coordinates" in nc.ncattrs():
            nc.delncattr("coordinates")
        var = nc.createVariable(
            name,
            "f4",
            dims,
            zlib=True,
            complevel=spec.complevel,
            shuffle=True,
            chunksizes=chunks,
            fill_value=np.float32(FILL),
        )  # type: ignore[call-overload]  # netCDF4's stubs type complevel as a Literal of 0..9
        var.setncatts(
            {
                **attrs,
                **({"coordinates": " ".join(latlon)} if latlon else {}),
                **({"grid_mapping": grid.mapping_name} if grid.mapping_name else {}),
            }
        )


FILL = 1.0e20


def _subdaily_bounds(times: np.ndarray) -> np.ndarray | None:
    """``[T, 2]`` bounds ``stamp -/+ half a step`` of a sub-daily time axis; None for daily (or coarser) data."""
    from downscale.data.calendar import time_step_seconds

    try:
        step = time_step_seconds(times)
    except DataError:
        return None
    if step >= 86400.0:
        return None
    values = np.asarray(times)
    half: Any = (
        np.timedelta64(int(step * 500), "ms")
        if np.issubdtype(values.dtype, np.datetime64)
        else _dt.timedelta(seconds=step / 2.0)
    )
    return np.stack([values - half, values + half], axis=1)


def assemble(spec: OutputSpec, emu: Any) -> list[tuple[str, Path, list[dict[str, Any]]]]:
    """Write the output file of each target of one period from its chunks (to a hidden name, then renamed),
    then delete the chunks.  Chunk by chunk: memory stays at one chunk.  Returns ``(target, path,
    violations)`` per target; a file that is already complete (same run) is kept as it is."""
    import netCDF4
    from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK

    from downscale.apply.sanity import Violation
    from downscale.data.variables import get_spec

    period_dir, out_dir = Path(spec.period_dir), Path(spec.out_dir)
    paths = [chunk_path(period_dir, a, b) for a, b in spec.chunks]
    violations: dict[str, list[Violation]] = {}
    for p in paths:
        for v in read_chunk_meta(p).get("violations", []):
            violations.setdefault(v["variable"], []).append(Violation.from_dict(v))
    results: dict[str, tuple[str, Path, list[dict[str, Any]]]] = {}
    todo: dict[int, tuple[str, Path, Path]] = {}
    for v, name in enumerate(emu.targets):
        final = out_dir / spec.names[name]
        if final.is_file() and run_id_of(final) == spec.run_id:
            results[name] = (name, final, [f.to_dict() for f in violations.get(name, [])])
        else:
            todo[v] = (name, final, temporary_name(final))
    try:
        for name, _, tmp in todo.values():
            var = get_spec(name)
            lo, hi = plausible_bounds(emu.meta)[name]
            attrs = {
                "standard_name": var.standard_name,
                "long_name": f"{var.long_name} (downscaled)",
                "units": var.units,
                "cell_methods": "time: mean",
                "downscale_plausible_range": np.array([lo, hi], np.float64),
            }
            _template(spec, emu, name, attrs, tmp)
        p0 = spec.chunks[0][0] if spec.chunks else 0
        for (a, b), path in zip(spec.chunks, paths, strict=True):
            y = np.load(path)
            for v, (name, _, tmp) in todo.items():
                block = y[:, :, v] if spec.members else y[:, v]
                block = np.where(np.isfinite(block), block, np.float32(FILL)).astype(np.float32)
                with NETCDF4_PYTHON_LOCK, netCDF4.Dataset(tmp, "a") as nc:
                    nc[name].set_auto_maskandscale(False)
                    nc[name][a - p0 : b - p0] = block
            del y
        for name, final, tmp in todo.values():
            flagged = violations.get(name, [])
            gattrs = {"title": f"{get_spec(name).long_name} downscaled by the {emu.name} emulator"}
            vattrs = {}
            if flagged:
                total = sum(f.count for f in flagged)
                listed = "; ".join(
                    f"{f.kind} {f.value:.6g} {f.units} on {f.where()} ({f.count} in its chunk)" for f in flagged[:20]
                )
                vattrs["downscale_implausible"] = f"{total} value(s) outside the checks: {listed}" + (
                    f"; and {len(flagged) - 20} more chunks" if len(flagged) > 20 else ""
                )
                gattrs["downscale_sanity"] = (
                    f"FLAGGED: {total} implausible value(s) of {name} written "
                    "(--on-implausible warn); see the variable attribute "
                    "downscale_implausible"
                )
            else:
                gattrs["downscale_sanity"] = (
                    "passed: no NaN where the grid is valid, no negative precipitation, "
                    "every value within its plausible range"
                )
            with NETCDF4_PYTHON_LOCK, netCDF4.Dataset(tmp, "a") as nc:
                nc.setncatts(gattrs)
                nc[name].setncatts(vattrs)
            os.replace(tmp, final)
            results[name] = (name, final, [f.to_dict() for f in flagged])
    finally:
        for _, _, tmp in todo.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    shutil.rmtree(period_dir, ignore_errors=True)
    return [results[name] for name in emu.targets]
