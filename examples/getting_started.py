"""Make the figure and numbers of docs/getting-started.md from a trained bundle.

    downscale train recipes/perfect-model-iberia.yaml -o runs/perfect-model-iberia
    python examples/getting_started.py runs/perfect-model-iberia

Upscales the RACMO22E test winters (DJF 1998-2002) onto the CNRM-CM5 grid (the
perfect-model RCMu), downscales them with the emulator through the Python API,
and plots the wettest test day: coarse input, bilinear interpolation, the
emulator and the RCM truth, for tas and pr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import downscale
from downscale.data.calendar import Period, select_period
from downscale.data.grids import Grid
from downscale.data.io import open_dataset, open_variable
from downscale.data.regrid import create_regridder
from downscale.skill.metrics import rmse

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "iberia"
TEST = Period(years=(1998, 2002), season="DJF")


def main(bundle: str, out_png: str = "docs/img/getting-started-map.png") -> None:
    emu = downscale.load(bundle)
    truth = {}
    for var in emu.targets:
        da, _ = open_variable(sorted((DATA / "cordex").glob(f"{var}_EUR-44_*_historical_*.nc")), var)
        truth[var] = select_period(da, TEST).load()
    fine = Grid.from_dataset(truth["tas"])
    coarse_grid = Grid.from_dataset(open_dataset(DATA / "cmip5" / "tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc"))
    up = create_regridder(fine, coarse_grid, "area_mean")
    coarse = xr.Dataset({v: up(truth[v]) for v in emu.targets})  # RCMu: what other tools feed to `apply`
    pred = emu.downscale(coarse)
    interp = create_regridder(coarse_grid, fine, "bilinear")

    print(f"test period: {truth['tas'].sizes['time']} days")
    print("| variable | RMSE emulator | RMSE bilinear | units |")
    print("|---|---|---|---|")
    scale = {"tas": (1.0, 0.0, "K"), "pr": (86400.0, 0.0, "mm/day")}
    for v in emu.targets:
        f, _, u = scale[v]
        print(
            f"| {v} | {rmse(pred[v].values * f, truth[v].values * f):.3f} "
            f"| {rmse(interp(coarse[v]).values * f, truth[v].values * f):.3f} | {u} |"
        )

    day = int(np.argmax(truth["pr"].mean(("rlat", "rlon")).values))
    date = truth["pr"]["time"].values[day]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5), constrained_layout=True)
    for row, v in enumerate(["tas", "pr"]):
        f = 86400.0 if v == "pr" else 1.0
        off = -273.15 if v == "tas" else 0.0
        panels = [
            ("coarse input (RCMu on CNRM-CM5 grid)", coarse_grid, coarse[v].isel(time=day).values),
            ("bilinear interpolation", fine, interp(coarse[v]).isel(time=day).values),
            (f"emulator ({emu.meta['model']['type']})", fine, pred[v].isel(time=day).values),
            ("RACMO22E truth", fine, truth[v].isel(time=day).values),
        ]
        vals = np.concatenate([p[2].ravel() * f + off for p in panels])
        vmin, vmax = (0.0, np.nanpercentile(vals, 99.5)) if v == "pr" else np.nanpercentile(vals, [0.5, 99.5])
        cmap = "Blues" if v == "pr" else "RdYlBu_r"
        for ax, (title, grid, values) in zip(axes[row], panels, strict=True):
            lat, lon = grid.lat, grid.lon
            if lat.ndim == 1:
                lon, lat = np.meshgrid(lon, lat)
            mesh = ax.pcolormesh(lon, lat, values * f + off, cmap=cmap, vmin=vmin, vmax=vmax, shading="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xlim(-14.5, 6.5)
            ax.set_ylim(31.5, 47)
            ax.set_aspect(1.25)
        units = "mm/day" if v == "pr" else "°C"
        fig.colorbar(mesh, ax=axes[row], shrink=0.8, label=f"{v} ({units})")
    fig.suptitle(f"{date.strftime('%Y-%m-%d')}: the wettest day of the test winters (DJF 1998-2002)")
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    main(*sys.argv[1:])
