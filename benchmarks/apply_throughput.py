"""Throughput and memory of ``downscale apply`` on a synthetic CMIP6-like global daily projection.

    python benchmarks/apply_throughput.py            # 10/20/40 simulated years (several minutes on 2 cores)
    python benchmarks/apply_throughput.py --quick    # 2/4 years, a smoke test

1. Writes a CMIP6-like projection to a temporary folder: global 2.8 deg grid (64 x 128), ``zg``, ``ta``, ``hus``,
   ``ua``, ``va`` on plev 850/700/500 hPa, noleap calendar, one file per variable and decade (``--quick``: and
   year), zlib level 1,
   DRS names (``ta_day_BENCH-ESM_ssp585_r1i1p1f1_gn_20150101-20241231.nc``).
2. Builds a bundle of the ML-Bench shape: 15 predictor channels (5 variables x 3 levels) on a 16 x 16 coarse grid
   (a block of the global grid over Europe, across the Greenwich meridian), 2 targets (tas, pr) on a 128 x 128
   rotated-pole fine grid; untrained ``simple_cnn`` weights, a fitted-looking normaliser, the meta keys that
   ``downscale train`` writes; saved with :func:`downscale.bundle.save_bundle`.
3. In a fresh subprocess per run (peak RSS from ``resource.getrusage``): ``downscale apply`` end to end on the
   first N decades, and a bare forward pass of the same model over pre-normalised in-memory tensors.

It prints the simulated years per minute of both and their ratio, and peak RSS against the projection length
(with the slope per simulated year, to show that memory does not grow with the length).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIABLES = {  # name: (standard_name, units, {level hPa: (mean, equator-pole amplitude, noise)})
    "zg": (
        "geopotential_height",
        "m",
        {850: (1450.0, 120.0, 40.0), 700: (3000.0, 180.0, 50.0), 500: (5600.0, 300.0, 70.0)},
    ),
    "ta": ("air_temperature", "K", {850: (275.0, 25.0, 4.0), 700: (265.0, 22.0, 3.5), 500: (250.0, 20.0, 3.0)}),
    "hus": ("specific_humidity", "1", {850: (6e-3, 5e-3, 1e-3), 700: (3.5e-3, 3e-3, 6e-4), 500: (1.2e-3, 1e-3, 2e-4)}),
    "ua": ("eastward_wind", "m s-1", {850: (3.0, 6.0, 6.0), 700: (6.0, 8.0, 7.0), 500: (10.0, 12.0, 9.0)}),
    "va": ("northward_wind", "m s-1", {850: (0.0, 2.0, 5.0), 700: (0.0, 2.0, 6.0), 500: (0.0, 2.0, 7.0)}),
}
LEVELS = (850, 700, 500)
NLAT, NLON = 64, 128
LAT = np.linspace(-87.8638, 87.8638, NLAT)
LON = np.arange(NLON) * (360.0 / NLON)
COARSE_ROWS = slice(41, 57)  # 16 rows, 26.5N..68.3N
COARSE_COLS = np.r_[np.arange(121, 128), np.arange(0, 9)]  # 16 columns, 19.7W..22.5E (across the seam)
START = 2015


# ------------------------------------------------------------------------------------------- data
def write_projection(folder: Path, years: int, seed: int = 0, file_years: int = 10) -> list[Path]:
    """One file per variable and ``file_years`` years (a decade); returns the files."""
    import cftime
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pattern = np.cos(np.radians(LAT))[:, None] * (1.0 + 0.1 * np.sin(np.radians(2 * LON)))[None, :]
    files = []
    for d0 in range(START, START + years, file_years):
        d1 = min(d0 + file_years, START + years) - 1
        t0 = cftime.date2num(cftime.datetime(d0, 1, 1, 12, calendar="noleap"), "days since 1850-01-01", "noleap")
        days = 365 * (d1 - d0 + 1)
        time_values = t0 + np.arange(days, dtype=np.float64)
        for var, (standard_name, units, levels) in VARIABLES.items():
            path = folder / f"{var}_day_BENCH-ESM_ssp585_r1i1p1f1_gn_{d0}0101-{d1}1231.nc"
            with netCDF4.Dataset(path, "w") as nc:
                nc.setncatts(
                    {
                        "Conventions": "CF-1.7 CMIP-6.2",
                        "mip_era": "CMIP6",
                        "source_id": "BENCH-ESM",
                        "experiment_id": "ssp585",
                        "variant_label": "r1i1p1f1",
                        "grid_label": "gn",
                        "table_id": "day",
                        "frequency": "day",
                        "variable_id": var,
                        "title": "synthetic CMIP6-like data for benchmarks/apply_throughput.py",
                    }
                )
                nc.createDimension("time", None)
                nc.createDimension("plev", len(LEVELS))
                nc.createDimension("lat", NLAT)
                nc.createDimension("lon", NLON)
                nc.createDimension("bnds", 2)
                t = nc.createVariable("time", "f8", ("time",))
                t.setncatts(
                    {
                        "units": "days since 1850-01-01",
                        "calendar": "noleap",
                        "standard_name": "time",
                        "axis": "T",
                        "bounds": "time_bnds",
                    }
                )
                tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
                p = nc.createVariable("plev", "f8", ("plev",))
                p.setncatts({"units": "Pa", "standard_name": "air_pressure", "axis": "Z", "positive": "down"})
                p[:] = np.array(LEVELS, float) * 100.0
                for name, values, std in (("lat", LAT, "latitude"), ("lon", LON, "longitude")):
                    c = nc.createVariable(name, "f8", (name,))
                    c.setncatts(
                        {
                            "units": f"degrees_{'north' if name == 'lat' else 'east'}",
                            "standard_name": std,
                            "axis": "Y" if name == "lat" else "X",
                        }
                    )
                    c[:] = values
                v = nc.createVariable(
                    var,
                    "f4",
                    ("time", "plev", "lat", "lon"),
                    zlib=True,
                    complevel=1,
                    shuffle=True,
                    chunksizes=(1, len(LEVELS), NLAT, NLON),
                    fill_value=np.float32(1e20),
                )
                v.setncatts({"standard_name": standard_name, "units": units, "cell_methods": "time: mean"})
                t[:] = time_values
                tb[:] = np.stack([time_values - 0.5, time_values + 0.5], axis=1)
                for y0 in range(0, days, 365):
                    n = min(365, days - y0)
                    season = np.sin(2 * np.pi * (np.arange(y0, y0 + n) % 365) / 365.0)[:, None, None]
                    block = np.empty((n, len(LEVELS), NLAT, NLON), np.float32)
                    for k, lev in enumerate(LEVELS):
                        mean, amp, noise = levels[lev]
                        block[:, k] = (
                            mean
                            + amp * pattern[None] * (1.0 + 0.2 * season)
                            + noise * rng.standard_normal((n, NLAT, NLON), np.float32)
                        )
                    if var == "hus":
                        np.maximum(block, 1e-6, out=block)
                    v[y0 : y0 + n] = block
            files.append(path)
    return files


# ------------------------------------------------------------------------------------------- bundle
def build_bundle(path: Path, *, width: int, coarse_blocks: int, fine_blocks: int) -> Path:
    """An untrained bundle of the ML-Bench shape, saved as ``downscale train`` would save it."""
    import datetime as _dt

    import torch

    from downscale import __version__
    from downscale.bundle import Bundle, BundleMeta, save_bundle
    from downscale.bundle.meta import VariableMeta
    from downscale.data.forcings import forcing_names
    from downscale.data.grids import Grid
    from downscale.data.normalise import Normaliser, Stats
    from downscale.models import create_model
    from downscale.models.losses import create_criterion
    from downscale.recipe import recipe_from_dict

    predictors = [f"{v}{lev}" for v in VARIABLES for lev in LEVELS]
    targets = ["tas", "pr"]
    coarse = Grid.rectilinear(LAT[COARSE_ROWS], LON[COARSE_COLS])
    fine = Grid.rotated(np.linspace(-13.0, 14.94, 128), np.linspace(-18.0, 9.94, 128), 39.25, -162.0)
    forcings = ["season"]
    model_kwargs = {"width": width, "coarse_blocks": coarse_blocks, "fine_blocks": fine_blocks}
    recipe = recipe_from_dict(
        {
            "name": "bench-mlbench-shape",
            "framework": "emulator",
            "data": {
                "targets": {"tas": ["tas.nc"], "pr": ["pr.nc"]},
                "predictors": {p: [f"{p}.nc"] for p in predictors},
                "forcings": forcings,
                "scenario": "ssp585",
                "periods": {"train": {"years": [1980, 2009]}},
            },
            "model": {"type": "simple_cnn", **model_kwargs},
            "apply": {"chunk_days": 365},
        }
    )
    stats = {
        f"{v}{lev}": Stats(levels[lev][0], levels[lev][1] / 2 + levels[lev][2])
        for v, (_, _, levels) in VARIABLES.items()
        for lev in LEVELS
    }
    normaliser = Normaliser(stats, {"tas": Stats(285.0, 8.0), "pr": Stats(3e-5, 6e-5, "scale")}, {})
    torch.manual_seed(0)
    loss = create_criterion("mse", targets, {}, normaliser=normaliser)
    model = create_model(
        "simple_cnn",
        in_channels=len(predictors),
        out_channels=loss.out_channels,
        n_forcings=len(forcing_names(forcings)),
        n_static=0,
        **model_kwargs,
    )
    raw = {
        "name": recipe.name,
        "framework": recipe.framework,
        "predictors": [VariableMeta.of(n) for n in predictors],
        "targets": [VariableMeta.of(n) for n in targets],
        "static": [],
        "forcings": forcings,
        "forcing_names": forcing_names(forcings),
        "scenario": "ssp585",
        "grids": {"coarse": coarse.to_dict(), "fine": fine.to_dict()},
        "normaliser": normaliser.to_dict(),
        "model": {
            "type": "simple_cnn",
            "kwargs": model_kwargs,
            "n_forcings": len(forcing_names(forcings)),
            "out_channels": loss.out_channels,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "loss": loss.describe(),
        "heads": recipe.loss,
        "regrid": recipe.data.regrid,
        "apply": recipe.apply,
        "recipe": recipe.to_dict(),
        "provenance": {
            "files": [],
            "periods": {"train": "1980-2009 (synthetic)"},
            "samples": {"train": 0},
            "conversions": [],
            "steps": ["untrained benchmark bundle"],
            "calendar": "noleap",
            "code_version": __version__,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "training": {"best_epoch": 0, "best_val_loss": None, "epochs_run": 0, "stopped_early": False},
    }
    meta = BundleMeta.model_validate(raw)
    arrays = {"valid_mask": np.ones((len(targets), *fine.shape), bool)}
    save_bundle(path, Bundle(meta=meta, weights=model.state_dict(), arrays=arrays))
    return path


# ------------------------------------------------------------------------------------------- runs
def _child(args: argparse.Namespace) -> None:
    """One measured run in this (fresh) process; prints a JSON line."""
    import resource

    import torch

    torch.set_num_threads(args.threads)
    if args.child == "apply":
        from downscale.apply import downscale_files

        files = json.loads(args.files)
        t0, c0 = time.perf_counter(), time.process_time()
        result = downscale_files(args.bundle, files, args.out, chunk_days=args.chunk_days)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        days = int(sum(_days(p) for p in result if p.name.startswith("tas_")))
    else:
        import downscale

        emu = downscale.load(args.bundle)
        days = args.days
        rng = np.random.default_rng(0)
        x = torch.from_numpy(rng.standard_normal((days, len(emu.predictors), *emu.coarse_grid.shape), np.float32))
        f = torch.from_numpy(rng.standard_normal((days, len(emu.meta["forcing_names"])), np.float32))
        s = torch.zeros((64, 0, *emu.fine_grid.shape))
        emu.model.eval()
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for i in range(0, days, 64):
                xb, fb = x[i : i + 64], f[i : i + 64]
                emu.model(xb, fb, s[: len(xb)], emu.fine_grid.shape)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # MiB (Linux reports KiB)
    print(json.dumps({"kind": args.child, "days": days, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": rss}))


def _days(path: Path) -> int:
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        return len(nc.dimensions["time"])


def _spawn(kind: str, bundle: Path, threads: int, **kw: object) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--bundle", str(bundle), "--threads", str(threads)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 and 4 simulated years (smoke test)")
    ap.add_argument("--years", type=int, nargs="+", default=None, help="projection lengths to run (decades)")
    ap.add_argument("--throughput-years", type=int, default=None, help="length of the throughput comparison")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch/OpenMP threads of every run (1: robust on shared machines)"
    )
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--coarse-blocks", type=int, default=2)
    ap.add_argument("--fine-blocks", type=int, default=2)
    ap.add_argument("--chunk-days", type=int, default=365)
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the generated projection here and reuse it (default: a temporary folder)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bundle", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--files", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--days", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    years = args.years or ([2, 4] if args.quick else [10, 20, 40])
    tp_years = args.throughput_years or (2 if args.quick else 20)
    with tempfile.TemporaryDirectory(prefix="apply-bench-") as tmp:
        root = Path(tmp)
        data = (args.workdir or root) / "cmip6"
        n_years = max(years + [tp_years])
        t0 = time.perf_counter()
        file_years = 1 if args.quick else 10
        done = json.loads((data / "done.json").read_text()) if (data / "done.json").is_file() else {}
        if done.get("file_years") != file_years or done.get("years", 0) < n_years:
            for p in data.glob("*.nc"):
                p.unlink()
            write_projection(data, n_years, file_years=file_years)
            (data / "done.json").write_text(json.dumps({"years": n_years, "file_years": file_years}))
        files = sorted(data.glob("*.nc"))
        gen = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in files) / 2**30
        print(f"{len(files)} input files ({size:.2f} GiB, {n_years} years) ready in {gen:.0f} s", flush=True)
        bundle = build_bundle(
            root / "bundle", width=args.width, coarse_blocks=args.coarse_blocks, fine_blocks=args.fine_blocks
        )
        runs = []

        def apply_run(n: int) -> dict:
            chosen = [str(p) for p in files if int(p.name.rsplit("_", 1)[1][:4]) < START + n]
            assert len(chosen) == 5 * -(-n // file_years), "the generated projection is too short"
            r = _spawn(
                "apply",
                bundle,
                args.threads,
                files=json.dumps(chosen),
                out=root / f"out-{n}",
                chunk_days=args.chunk_days,
            )
            r["years"] = r["days"] / 365.0
            r["years_per_minute"] = r["years"] / (r["seconds"] / 60.0)
            print(
                f"apply {n:>3} years: {r['seconds']:.0f} s ({r['cpu_seconds']:.0f} s CPU), "
                f"{r['years_per_minute']:.2f} sim-years/min, peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            runs.append(r)
            return r

        def bare_run() -> dict:
            r = _spawn("bare", bundle, args.threads, days=365 * min(tp_years, 5))
            r["years"] = r["days"] / 365.0
            r["years_per_minute"] = r["years"] / (r["seconds"] / 60.0)
            print(
                f"bare forward pass: {r['years_per_minute']:.2f} sim-years/min "
                f"({r['seconds']:.0f} s, {r['cpu_seconds']:.0f} s CPU, {r['years']:.0f} years), "
                f"peak RSS {r['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
            return r

        # the bare pass right before and after the throughput run: on a shared machine the load drifts
        by_years = {}
        for n in sorted(set(years) - {tp_years}):
            by_years[n] = apply_run(n)
        bares = [bare_run()]
        by_years[tp_years] = apply_run(tp_years)
        bares.append(bare_run())
        bare = {k: (bares[0][k] + bares[1][k]) / 2 for k in ("seconds", "cpu_seconds", "peak_rss_mib", "years")}
        bare["years_per_minute"] = bare["years"] / (bare["seconds"] / 60.0)
        by_years = dict(sorted(by_years.items()))
        tp = by_years[tp_years]
        ratio = tp["years_per_minute"] / bare["years_per_minute"]
        cpu_ratio = (bare["cpu_seconds"] / bare["years"]) / (tp["cpu_seconds"] / tp["years"])
        xs = np.array(sorted(by_years), float)
        rss = np.array([by_years[int(n)]["peak_rss_mib"] for n in xs])
        slope, icpt = np.polyfit(xs, rss, 1) if len(xs) > 1 else (0.0, float(rss[0]))
        last = (rss[-1] - rss[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else 0.0
        summary = {
            "threads": args.threads,
            "model": {"width": args.width, "coarse_blocks": args.coarse_blocks, "fine_blocks": args.fine_blocks},
            "chunk_days": args.chunk_days,
            "generated_gib": size,
            "bare": bare,
            "apply": runs,
            "throughput_ratio": ratio,
            "cpu_throughput_ratio": cpu_ratio,
            "rss_slope_mib_per_year": slope,
            "rss_slope_last_mib_per_year": last,
            "rss_at_100_years_extrapolated_mib": icpt + 100 * slope,
        }
        print(f"apply / bare forward pass: {ratio:.2f} (wall), {cpu_ratio:.2f} (CPU time per simulated year)")
        print(
            "peak RSS: "
            + ", ".join(f"{int(n)} y: {r:.0f} MiB" for n, r in zip(xs, rss, strict=True))
            + f"; slope {slope:+.2f} MiB per simulated year (between the longest two: {last:+.2f}) "
            f"-> {icpt + 100 * slope:.0f} MiB at 100 years"
        )
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
