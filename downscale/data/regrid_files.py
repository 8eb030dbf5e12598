"""Regrid files: e.g. upscale RCM output to a GCM grid (the RCMu of the perfect-model framework).

Each data variable on the source grid is regridded with one regridder (weights
computed once per file grid), in its source units; time, calendar and global
attributes (model, experiment, member) are kept, so the result can be fed to
``downscale apply`` like any GCM file.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

from downscale.atomic import atomic_path

__all__ = ["regrid_files"]


def regrid_files(
    inputs: Sequence[str | Path],
    grid_file: str | Path,
    out_dir: str | Path,
    *,
    method: str = "area_mean",
    suffix: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Regrid every input file onto the grid of ``grid_file``; return the files written.

    Output names are the input names with ``_<method>-<grid id>`` before ``.nc``.  ``out_dir`` follows the
    output contract of :mod:`downscale.outdir` (``overwrite``: rewrite a finished folder of ours).
    """
    from downscale.outdir import OutputFolder

    with OutputFolder(out_dir, "regrid", overwrite=overwrite) as output:
        written = _regrid_files(inputs, grid_file, Path(out_dir), method=method, suffix=suffix)
        output.finish(files=[p.name for p in written])
    return written


def _regrid_files(
    inputs: Sequence[str | Path], grid_file: str | Path, out_dir: Path, *, method: str, suffix: str | None
) -> list[Path]:
    from downscale import __version__
    from downscale.data.grids import Grid
    from downscale.data.io import expand_inputs, open_dataset
    from downscale.data.regrid import create_regridder

    target = Grid.from_dataset(open_dataset(grid_file), file=grid_file)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = suffix or f"{method}-{target.id[:8]}"
    written: list[Path] = []
    for path in expand_inputs(inputs):
        ds = open_dataset(path)
        source = Grid.from_dataset(ds, file=path)
        regrid = create_regridder(source, target, method)
        fields = {str(name): regrid(da) for name, da in ds.data_vars.items() if set(source.dims) <= set(da.dims)}
        out = target.to_dataset(fields)
        for name in ("time_bnds", "time_bounds"):
            if name in ds:
                out[name] = ds[name]
        out.attrs = dict(ds.attrs)
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out.attrs["history"] = (
            f"{now}: {method} regridding onto {target.describe()} (downscale {__version__})\n"
            + str(ds.attrs.get("history", ""))
        ).strip()
        encoding = {n: {"zlib": True, "complevel": 4, "dtype": "float32"} for n in fields}
        if "time" in ds:
            encoding["time"] = {k: v for k, v in ds["time"].encoding.items() if k in ("units", "calendar")}
        final = out_dir / f"{path.stem}_{suffix}.nc"
        with atomic_path(final) as tmp:
            out.to_netcdf(tmp, encoding=encoding)
        written.append(final)
    return written
