"""The emulator runtime: the Python API for people who apply emulators.

    import downscale
    emu = downscale.load("runs/perfect-model-iberia")
    print(emu.describe())
    fine = emu.downscale(coarse)          # xr.Dataset on the RCM grid

``coarse`` is any ``xr.Dataset`` holding the emulator's predictors (by name or
CF standard_name, any units that convert to the canonical ones, any calendar) on
the emulator's coarse grid or on a rectilinear grid that covers it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from downscale.bundle import Bundle, BundleMeta
from downscale.data.calendar import format_date
from downscale.data.grids import Grid
from downscale.data.regrid.base import Regridder
from downscale.emulator.lineage import describe_lineage
from downscale.emulator.postprocess import apply_wet_day_thresholds
from downscale.emulator.sanity import check_on_implausible, check_output
from downscale.errors import DataError

__all__ = ["Emulator", "EmulatorRef", "available_memory", "cached_emulator", "check_options", "load"]

#: seeds are 63-bit non-negative integers (torch generators take at most 64 bits; each block derives its own)
SEED_LIMIT = 2**63
_GiB = float(1 << 30)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_options(
    *,
    members: Any = None,
    mode: Any = "mean",
    seed: Any = 0,
    halo: Any = None,
    chunk_days: Any = None,
    batch_size: Any = None,
    cli: bool = False,
) -> dict[str, Any]:
    """Validate the options of :meth:`Emulator.downscale`/:meth:`Emulator.predict` and ``downscale apply`` before
    any work; returns them normalised (Python ints and floats).  ``cli``: name them as options (``--chunk-days``)."""

    def name(arg: str) -> str:
        return f"--{arg.replace('_', '-')}" if cli else f"argument '{arg}'"

    def whole(arg: str, value: Any, fix: str, low: int = 1, high: int | None = None) -> int:
        if not _is_int(value) or value < low or (high is not None and value >= high):
            what = "not a whole number" if not _is_int(value) else "out of range"
            limits = f">= {low}" if high is None else f"{low} <= {arg} < 2**63"
            raise DataError(
                f"{name(arg)} is {what}",
                found=f"{value!r} ({type(value).__name__})",
                expected=f"an integer {limits}",
                fix=fix,
            )
        return int(value)

    out: dict[str, Any] = {}
    if members is not None:
        out["members"] = whole("members", members, "give a whole number of ensemble members, 1 or more")
    else:
        out["members"] = None
    if not isinstance(mode, str) or mode not in ("mean", "sample"):
        raise DataError(
            f"{name('mode')} is not a known mode",
            found=repr(mode),
            expected="'mean' or 'sample'",
            fix="use mode 'mean' (each head's expectation) or 'sample' (a draw)",
        )
    out["mode"] = mode
    out["seed"] = whole("seed", seed, "give an integer seed, e.g. 0 or 1234", low=0, high=SEED_LIMIT)
    if halo is not None:
        real = isinstance(halo, (int, float, np.integer, np.floating)) and not isinstance(halo, (bool, np.bool_))
        if not real or not math.isfinite(float(halo)) or float(halo) < 0:
            raise DataError(
                f"{name('halo')} is not a finite non-negative number of degrees",
                found=repr(halo),
                expected="a number >= 0 (degrees of margin read around the domain)",
                fix="give e.g. 0 or 3.0, or leave it unset for the recipe's apply.halo (else two coarse cells)",
            )
        out["halo"] = float(halo)
    else:
        out["halo"] = None
    if chunk_days is not None:
        out["chunk_days"] = whole("chunk_days", chunk_days, "give a whole number of days per chunk, 1 or more")
    else:
        out["chunk_days"] = None
    if batch_size is not None:
        out["batch_size"] = whole("batch_size", batch_size, "give a whole number of steps per batch, 1 or more")
    return out


def available_memory() -> int:
    """Bytes of memory available: psutil's ``available`` when installed, else the physical memory."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is usually there
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return int(psutil.virtual_memory().available)


def _as_datasets(ds: Any) -> list[xr.Dataset]:
    """The input(s) of :meth:`Emulator.coarse_fields` as datasets: a Dataset, a named DataArray, or a list."""
    items = list(ds) if isinstance(ds, (list, tuple)) else [ds]
    out = []
    for item in items:
        if isinstance(item, xr.Dataset):
            out.append(item)
        elif isinstance(item, xr.DataArray):
            if item.name is None:
                raise DataError(
                    "the input is a DataArray without a name",
                    found=f"an unnamed DataArray of dims {tuple(map(str, item.dims))}",
                    expected="a DataArray named after its predictor, or a Dataset of the predictors",
                    fix="name it after the predictor it holds, e.g. da.rename('tas')",
                )
            out.append(item.to_dataset())
        else:
            raise DataError(
                "the input is not an xarray Dataset",
                found=type(item).__name__,
                expected="an xr.Dataset of the predictors with time and grid coordinates (or a named DataArray, or a list of them)",
                fix="open the files with xarray.open_mfdataset(...); numpy arrays in canonical units go to Emulator.predict",
            )
    return out


def _check_time(da: xr.DataArray, name: str, where: str | None) -> None:
    """A predictor must have a non-empty time axis of dates (numpy datetime64 or cftime)."""
    if "time" not in da.dims or "time" not in da.coords:
        raise DataError(
            "the predictor has no time coordinate",
            file=where,
            variable=name,
            found=f"dims {tuple(map(str, da.dims))}",
            expected="a 'time' dimension with a time coordinate",
            fix="give data with a time axis; for a single step use ds.expand_dims(time=[stamp])",
        )
    values = np.asarray(da["time"].values)
    if values.size == 0:
        raise DataError(
            "the predictor has no time steps",
            file=where,
            variable=name,
            found="0 time steps",
            expected="at least one",
            fix="check the period selected from the input",
        )
    dated = np.issubdtype(values.dtype, np.datetime64) or (
        values.dtype == object and all(hasattr(v, "calendar") and hasattr(v, "year") for v in values.flat[:1])
    )
    if not dated:
        raise DataError(
            "the time coordinate does not hold dates",
            file=where,
            variable=name,
            found=f"{values.dtype} values such as {values.flat[0]!r}",
            expected="datetime64 or cftime dates",
            fix="decode the times (xr.open_dataset(..., decode_times=True)) or give the time coordinate its units and calendar",
        )


class Emulator:
    """A trained emulator, loaded from a bundle; holds no training state."""

    def __init__(self, bundle: Bundle) -> None:
        import torch

        from downscale.models import create_model
        from downscale.models.losses import create_criterion

        self.bundle = bundle
        meta = bundle.meta
        self.meta: BundleMeta = meta
        self.predictors: list[str] = meta.predictor_names
        self.targets: list[str] = meta.target_names
        self.static_names: list[str] = meta.static_names
        self.forcings: list[str] = list(meta.forcings)
        self.coarse_grid = meta.coarse_grid()
        self.fine_grid = meta.fine_grid()
        self.normaliser = meta.make_normaliser()
        heads = meta.heads
        self.criterion = create_criterion(
            heads.type,
            self.targets,
            heads.variables,
            params=heads.params,
            members=heads.members,
            normaliser=self.normaliser,
        )
        self.model = create_model(
            meta.model.type,
            in_channels=len(self.predictors),
            out_channels=self.criterion.out_channels,
            n_forcings=meta.model.n_forcings,
            n_static=len(self.static_names),
            **meta.model.kwargs,
        )
        self.model.load_state_dict(bundle.weights, strict=True)
        self.model.eval()
        # the widest layer: a rough measure of the activations of one forward pass (see memory_needed)
        widths = [
            int(getattr(m, "out_channels", 0) or getattr(m, "out_features", 0) or 0) for m in self.model.modules()
        ]
        self._widest = max([self.criterion.out_channels, *widths])
        self.device = torch.device("cpu")
        static = bundle.arrays.get("static")
        if static is not None and len(self.static_names):
            s = self.normaliser.normalise("static", static.astype(np.float32), self.static_names, axis=0)
            self._static = np.nan_to_num(s, nan=0.0)
        else:
            self._static = np.zeros((0, *self.fine_grid.shape), np.float32)
        self.valid_mask = bundle.arrays.get("valid_mask")
        # wet-day frequency adaptation (downscale/train/calibration.py): per-cell thresholds
        wet = meta.postprocess.wet_day_adaptation
        self._wet: list[tuple[int, np.ndarray]] = []
        if wet is not None and "wet_day_threshold" in bundle.arrays:
            thr = bundle.arrays["wet_day_threshold"]
            self._wet = [(self.targets.index(n), thr[k]) for k, n in enumerate(wet.variables)]
        self._regridders: dict[str, Regridder] = {}

    # -- identity ---------------------------------------------------------
    @property
    def id(self) -> str:
        return self.bundle.id or ""

    @property
    def name(self) -> str:
        return self.meta.name

    def describe(self) -> str:
        """A readable summary: variables, units, grids, periods, lineage."""
        m = self.meta
        lines = [
            f"emulator {self.name} (bundle {self.id}, format {m.format_version}, framework {m.framework})",
            "predictors: " + ", ".join(f"{p.name} [{p.units}]" for p in m.predictors),
            "targets:    " + ", ".join(f"{t.name} [{t.units}]" for t in m.targets),
            f"coarse grid: {self.coarse_grid.describe()}",
            f"fine grid:   {self.fine_grid.describe()}",
            "static:     " + (", ".join(self.static_names) or "none"),
            "forcings:   " + (", ".join(self.forcings) or "none"),
            f"model:      {m.model.type} ({m.model.parameters if m.model.parameters is not None else '?'} parameters)",
        ]
        lines += [f"{k + ':':11} {v}" for k, v in m.periods.items()]
        if m.lineage:
            lines += describe_lineage(m.lineage)
        shots = m.provenance.get("shots")
        if shots and not m.lineage:
            lines.append(
                f"k-shot:     {shots.get('size')} (seed {shots.get('seed')}), train {', '.join(shots.get('train_days', [])[:4])}, ..."
            )
        return "\n".join(lines)

    # -- inputs -----------------------------------------------------------
    def _scenario(self, ds: xr.Dataset, scenario: str | None) -> str:
        if scenario:
            return scenario
        for key in ("experiment_id", "experiment"):
            if key in ds.attrs and str(ds.attrs[key]).strip():
                return str(ds.attrs[key]).strip()
        return self.meta.scenario

    def default_halo(self) -> float:
        """The halo in degrees: the recipe's ``apply.halo`` when set (0 included), else two coarse cells."""
        if self.meta.apply.halo is not None:
            return float(self.meta.apply.halo)
        b = self.coarse_grid.axis_bounds()
        if b is None:  # curvilinear: the mean cell size
            return float(2.0 * np.degrees(np.sqrt(np.median(self.coarse_grid.cell_area())) / 6_371_000.0))
        return float(2.0 * max(np.abs(np.diff(b[0])).mean(), np.abs(np.diff(b[1])).mean()))

    def coarse_fields(
        self,
        ds: xr.Dataset | xr.DataArray | Sequence[xr.Dataset | xr.DataArray],
        *,
        file: str | None = None,
        halo: float | None = None,
    ) -> xr.DataArray:
        """The predictors of ``ds`` in canonical units on the coarse grid, as (time, channel, y, x); lazy.

        An input already on the coarse grid is used as it is (no coverage check, no regridding).  Any other
        rectilinear input must cover the emulator's domain plus ``halo`` degrees (default: the recipe's
        ``apply.halo``, else two coarse cells); it is cut to that region, widened to at least one of its own
        cells (:func:`~downscale.data.region.read_halo`), *before* anything is computed (a global file is read
        only over the domain), then regridded with the recipe's method (``data.regrid``, bilinear by default).

        ``ds`` may also be several datasets, one per input grid: a single ``xr.Dataset`` cannot hold predictors
        on two grids whose dimensions share names (xarray aligns them onto the union of the coordinates and pads
        each with NaN).  Each predictor is taken from the first dataset that holds it.  A named ``xr.DataArray``
        is taken as ``da.to_dataset()``.  Anything else, a predictor without a time axis of dates or with no
        steps, is a one-line :class:`~downscale.errors.DataError`.
        """
        from downscale.data.calendar import time_bounds
        from downscale.data.grids import Grid
        from downscale.data.pairing import stack_channels
        from downscale.data.region import check_input_grid, read_halo, subset_region
        from downscale.data.units import to_canonical

        datasets = _as_datasets(ds)
        if not datasets:
            raise DataError("no input dataset", fix="give the dataset(s) holding the predictors")
        halo = check_options(halo=halo)["halo"]
        halo = self.default_halo() if halo is None else halo
        found = {}
        for name in self.predictors:
            da = _find_predictor(datasets, name, file)
            _check_time(da, name, file or (da.attrs.get("source_files") or [None])[0])
            found[name] = da
        bounds = next((b for b in map(time_bounds, datasets) if b is not None), None)
        frequency = next((d.attrs["frequency"] for d in datasets if d.attrs.get("frequency")), None)
        fields = {}
        for name, da in found.items():
            where = file or (da.attrs.get("source_files") or [None])[0]
            grid = Grid.from_dataset(da, file=where)
            check_input_grid(grid, self.coarse_grid, halo, file=where, variable=name)
            if grid.id != self.coarse_grid.id:
                da, grid = subset_region(da, grid, self.coarse_grid, read_halo(grid, halo))
            da, _ = to_canonical(da, name, where, time_bounds=bounds, frequency=frequency)
            if grid.id != self.coarse_grid.id:
                da = self._regridder(grid)(da)
            fields[name] = da
        ref = next(iter(fields.values()))
        fields = {n: da.assign_coords(time=ref["time"].values) for n, da in fields.items()}
        return stack_channels(fields, self.coarse_grid.dims)

    def _regridder(self, grid: Grid) -> Regridder:
        """The regridder from ``grid`` onto the coarse grid (weights computed once per source grid)."""
        from downscale.data.regrid import create_regridder

        if grid.id not in self._regridders:
            self._regridders[grid.id] = create_regridder(grid, self.coarse_grid, self.meta.regrid)
        return self._regridders[grid.id]

    # -- inference --------------------------------------------------------
    @property
    def stochastic(self) -> bool:
        """True when the model draws noise: each forward pass is one ensemble member."""
        kwargs = self.meta.model.kwargs
        return any(int(kwargs.get(k, 0) or 0) > 0 for k in ("n_noise", "noise_maps"))

    def memory_needed(self, steps: int, members: int | None = None, batch_size: int = 64) -> int:
        """Bytes needed, roughly, to predict ``steps`` time steps with ``members`` members at once: the outputs
        (float32, every target on the fine grid, twice when a validity mask is applied), the raw outputs of a
        batch and their reading by the heads, the activations of the model (its widest layer on the fine grid, a
        few tensors alive at a time) and the checks of the output."""
        h, w = self.fine_grid.shape
        m = members or 1
        cells = 4 * h * w  # one float32 field
        out = steps * m * len(self.targets) * cells * (2 if self.valid_mask is not None else 1)
        batch = min(batch_size, max(steps, 1))
        raw = 3 * batch * m * self.criterion.out_channels * cells
        activations = 4 * batch * self._widest * cells
        checks = 2 * steps * m * cells
        return int(out + raw + activations + checks)

    def check_memory(
        self, steps: int, members: int | None = None, batch_size: int = 64, *, cli: bool = False, what: str = ""
    ) -> None:
        """Refuse, with one line, a computation that :meth:`memory_needed` says cannot fit in the memory
        available (:func:`available_memory`)."""
        need, have = self.memory_needed(steps, members, batch_size), available_memory()
        if need <= have:
            return
        h, w = self.fine_grid.shape
        fix = (
            "use --chunk-days N with a smaller N, or fewer --members"
            if cli
            else "downscale fewer time steps at once (a smaller chunk_days, or predict on slices of x) or use fewer members"
        )
        raise DataError(
            f"not enough memory{what}: {steps} time steps x {members or 1} member(s) x {len(self.targets)} "
            f"target(s) on the {h}x{w} fine grid need about {need / _GiB:.1f} GiB",
            found=f"{have / _GiB:.1f} GiB available",
            expected=f"at least {need / _GiB:.1f} GiB",
            fix=fix,
        )

    def predict(
        self,
        x: np.ndarray,
        f: np.ndarray,
        *,
        members: int | None = None,
        mode: str = "mean",
        batch_size: int = 64,
        seed: int = 0,
        on_implausible: str = "raise",
    ) -> np.ndarray:
        """The model on canonical-unit arrays: x [T, C, h, w] → [T, V, H, W] in canonical units,
        or [T, members, V, H, W] when ``members`` is given (one forward pass per member).

        ``mode`` reads each head's prediction: ``mean`` (expectation) or ``sample`` (a draw,
        e.g. from a Bernoulli-gamma head).  ``seed`` makes noise and draws reproducible.
        Every argument is checked first (one-line :class:`~downscale.errors.DataError`), and so is the memory
        the outputs need; the outputs get the checks of ``downscale apply`` (NaN where the grid is valid,
        negative precipitation, values outside the bundle's plausible ranges): ``on_implausible="raise"`` (the
        first violation, one line) or ``"warn"`` (one warning per violation).
        """
        opts = check_options(members=members, mode=mode, seed=seed, batch_size=batch_size)
        how = check_on_implausible(on_implausible)
        x, f = self._check_arrays(x, f)
        self.check_memory(len(x), opts["members"], opts["batch_size"])
        y = self._predict(
            x, f, members=opts["members"], mode=opts["mode"], batch_size=opts["batch_size"], seed=opts["seed"]
        )
        check_output(self, y, None, how)
        return y

    def _check_arrays(self, x: Any, f: Any) -> tuple[np.ndarray, np.ndarray]:
        """``x`` [T, C, h, w] and ``f`` [T, F] as float32 arrays of the shapes this emulator takes, or one line."""
        expected_x = f"[time, {len(self.predictors)} predictors ({', '.join(self.predictors)}), {self.coarse_grid.shape[0]}, {self.coarse_grid.shape[1]}]"
        n_f = int(self.meta.model.n_forcings)
        try:
            xa = np.asarray(x, dtype=np.float32)
            fa = np.asarray(f, dtype=np.float32)
        except (TypeError, ValueError):
            raise DataError(
                "predict takes numeric arrays",
                found=f"x {type(x).__name__}, f {type(f).__name__}",
                expected=f"x {expected_x} and f [time, {n_f}] in canonical units",
                fix="give numpy arrays (Emulator.coarse_fields(ds).values gives x; Emulator.downscale takes a Dataset)",
            ) from None
        if xa.ndim != 4 or xa.shape[1] != len(self.predictors) or tuple(xa.shape[2:]) != tuple(self.coarse_grid.shape):
            raise DataError(
                "predict: x has the wrong shape",
                found=str(list(xa.shape)),
                expected=expected_x,
                fix="regrid and stack the predictors with Emulator.coarse_fields(ds), or call Emulator.downscale(ds)",
            )
        if fa.ndim == 1 and n_f == 0 and fa.size == 0:
            fa = np.zeros((len(xa), 0), np.float32)
        if fa.ndim != 2 or fa.shape != (len(xa), n_f):
            raise DataError(
                "predict: the forcings f have the wrong shape",
                found=str(list(fa.shape)),
                expected=f"[{len(xa)}, {n_f}] (one row of the forcings {', '.join(self.forcings) or '(none)'} per time step of x)",
                fix="compute them with downscale.data.forcings.compute_forcings(time, emu.forcings, scenario)",
            )
        return xa, fa

    def _predict(
        self,
        x: np.ndarray,
        f: np.ndarray,
        *,
        members: int | None = None,
        mode: str = "mean",
        batch_size: int = 64,
        seed: int = 0,
    ) -> np.ndarray:
        """:meth:`predict` without the checks (its arguments are valid)."""
        import torch

        from downscale.data.variables import get_spec

        n_members = members or 1
        xn = self.normaliser.normalise("predictors", x.astype(np.float32), self.predictors, axis=1)
        out = np.empty((len(x), n_members, len(self.targets), *self.fine_grid.shape), np.float32)
        s = torch.from_numpy(self._static)[None]
        # explicit generators: the model's noise (members) and the heads' draws; torch's global RNG is untouched,
        # so concurrent predictions (threads of dask) need no lock and each member is reproducible from ``seed``
        noise = torch.Generator().manual_seed(seed)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(xn[i : i + batch_size]).to(self.device)
                fb = torch.from_numpy(f[i : i + batch_size].astype(np.float32)).to(self.device)
                sb = s.expand(len(xb), *s.shape[1:]).to(self.device)
                raw = torch.stack(
                    [self.model(xb, fb, sb, self.fine_grid.shape, generator=noise) for _ in range(n_members)], dim=1
                )
                yb = self.criterion.predict(raw, mode, generator)  # [B, M, V, H, W], normalised
                yb = self.normaliser.denormalise("targets", yb, self.targets, axis=2)
                out[i : i + len(xb)] = yb.cpu().numpy()
        for v, name in enumerate(self.targets):
            if get_spec(name).non_negative:  # precipitation: no negative values
                np.maximum(out[:, :, v], 0.0, out=out[:, :, v])
        if self._wet:
            for v, thr in self._wet:
                out[:, :, v] = apply_wet_day_thresholds(out[:, :, v], thr)
        if self.valid_mask is not None:
            out = np.where(self.valid_mask[None, None], out, np.nan).astype(np.float32)
        return out if members else out[:, 0]

    def downscale(
        self,
        ds: xr.Dataset | xr.DataArray | Sequence[xr.Dataset | xr.DataArray],
        *,
        scenario: str | None = None,
        members: int | None = None,
        mode: str = "mean",
        chunk_days: int = 365,
        seed: int = 0,
        file: str | None = None,
        halo: float | None = None,
        on_implausible: str = "raise",
    ) -> xr.Dataset:
        """Downscale ``ds`` (coarse predictors) to a LAZY ``xr.Dataset`` on the fine grid.

        Nothing is read or computed until the result is (``.load()``, ``.to_netcdf()``, a plot...): the
        result's variables are dask arrays made with ``map_blocks`` over blocks of ``chunk_days`` days (all
        their steps: 24 a day for an hourly emulator) of the coarse predictors, each running :meth:`predict`.  Compute the variables together
        (``fine.load()``, ``fine.to_netcdf(...)``), not one by one, or each block is predicted once per variable.

        ``ds``: an ``xr.Dataset`` (or a named ``xr.DataArray``, or a list of them, one per input grid).
        ``members``: an ensemble of that many members (a ``member`` dimension), one forward pass each
        (stochastic models); ``mode``: ``mean`` or ``sample`` (see :meth:`predict`); ``seed``: each block is
        seeded from ``seed`` and the index of its first day.  ``halo``: see :meth:`coarse_fields`.
        ``on_implausible``: each computed block gets the checks of ``downscale apply``: ``raise`` (one line,
        when the block is computed) or ``warn``.  Every argument, and the memory one block needs, is checked
        before anything is read (one-line :class:`~downscale.errors.DataError`).
        """
        import dask.array as dsa

        from downscale.data.forcings import compute_forcings
        from downscale.data.io import check_frequency, steps_per_day
        from downscale.data.variables import get_spec

        opts = check_options(members=members, mode=mode, seed=seed, halo=halo, chunk_days=chunk_days)
        how = check_on_implausible(on_implausible)
        if scenario is not None and not isinstance(scenario, str):
            raise DataError(
                "argument 'scenario' is not a name", found=repr(scenario), fix="give e.g. 'rcp85', or leave it unset"
            )
        members, mode, seed, chunk_days = opts["members"], opts["mode"], opts["seed"], opts["chunk_days"]
        datasets = _as_datasets(ds)
        steps = chunk_days * steps_per_day(self.meta.frequency)  # time steps per block (24 a day for hourly)
        x = self.coarse_fields(datasets, file=file, halo=opts["halo"])
        time = x["time"]
        self.check_memory(min(steps, time.size), members, what=" for one block of downscale()")
        check_frequency(time, self.meta.frequency, file=file or (x.attrs.get("source_files") or [None])[0])
        first = datasets[0]
        f = compute_forcings(
            time, self.forcings, self._scenario(first, scenario), longitude=self.meta.forcing_longitude
        )
        n = time.size
        if x.chunks is None:
            xd = dsa.from_array(np.asarray(x.values), chunks=(steps, -1, -1, -1), name=False)
        else:
            xd = x.data.rechunk((steps, -1, -1, -1))
        tchunks = xd.chunks[0]
        fd = dsa.from_array(f, chunks=(tchunks, -1), name=False)
        td = dsa.from_array(np.asarray(time.values), chunks=(tchunks,), name=False)
        idx = dsa.arange(n, chunks=(tchunks,))
        n_members = members or 1
        y = dsa.blockwise(
            _downscale_block,
            "tmvhw",
            xd,
            "tcij",
            fd,
            "tf",
            td,
            "t",
            idx,
            "t",
            new_axes={
                "m": n_members,
                "v": len(self.targets),
                "h": self.fine_grid.shape[0],
                "w": self.fine_grid.shape[1],
            },
            concatenate=True,
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0, 0), np.float32),
            emulator=EmulatorRef(self),
            members=n_members,
            mode=mode,
            seed=seed,
            file=file,
            check=how,
        )
        dims = ("time", "member") if members else ("time",)
        coords = {"time": time, **({"member": _member_coord(members)} if members else {})}
        data_vars = {}
        for v, name in enumerate(self.targets):
            spec = get_spec(name)
            attrs = {
                "standard_name": spec.standard_name,
                "long_name": f"{spec.long_name} (downscaled)",
                "units": spec.units,
            }
            values = y[:, :, v] if members else y[:, 0, v]
            data_vars[name] = self.fine_grid.wrap(values, name, leading=dims, coords=coords, attrs=attrs)
        result = self.fine_grid.to_dataset(data_vars)
        if "time" in first.coords and "time" in first["time"].encoding:
            result["time"].encoding.update(
                {k: first["time"].encoding[k] for k in ("units", "calendar") if k in first["time"].encoding}
            )
        result.attrs.update(
            {
                "downscale_bundle_id": self.id,
                "downscale_emulator": self.name,
            }
        )
        return result

    def downscale_block(
        self,
        x: np.ndarray,
        time: np.ndarray,
        *,
        start: int,
        scenario: str,
        members: int | None = None,
        mode: str = "mean",
        seed: int = 0,
        file: str | None = None,
    ) -> np.ndarray:
        """One block of days, eagerly: coarse predictors ``x`` [T, C, h, w] (canonical units, on the coarse
        grid) on days ``time`` -> [T, (members,) V, H, W].  ``start`` is the index of the block's first day in
        the whole series: it seeds the block, so a block gives the same values however the rest is cut.
        This is the computation behind both :meth:`downscale` and ``downscale apply``."""
        from downscale.data.forcings import compute_forcings

        f = compute_forcings(time, self.forcings, scenario, longitude=self.meta.forcing_longitude)
        y = _downscale_block(
            x,
            f,
            np.asarray(time),
            np.arange(start, start + len(x)),
            emulator=self,
            members=members or 1,
            mode=mode,
            seed=seed,
            file=file,
        )
        return y if members else y[:, 0]


class EmulatorRef:
    """A picklable handle on an :class:`Emulator` for dask graphs: pickles as (bundle folder, bundle id), so
    a dask.distributed worker loads each bundle once (kept in a per-process cache) instead of receiving the
    weights with every task.  An emulator not loaded from a folder is pickled whole."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def get(self) -> Emulator:
        return self._emulator

    def __reduce__(self) -> tuple:
        path = getattr(self._emulator.bundle, "path", None)
        if path is None:
            return (EmulatorRef, (self._emulator,))
        return (_cached_ref, (str(Path(path).resolve()), self._emulator.id))


_CACHE: dict[tuple[str, str], Emulator] = {}
_CACHE_LOCK = threading.Lock()


def cached_emulator(path: str | Path, bundle_id: str | None = None) -> Emulator:
    """The emulator of bundle folder ``path``, loaded once per process (and checked against ``bundle_id``)."""
    key = (str(Path(path).resolve()), bundle_id or "")
    with _CACHE_LOCK:
        emu = _CACHE.get(key)
        if emu is None:
            emu = load(path)
            if bundle_id and emu.id != bundle_id:
                from downscale.errors import BundleError

                raise BundleError(
                    "the bundle changed while it was being applied",
                    file=path,
                    found=emu.id,
                    expected=bundle_id,
                    fix="do not rewrite a bundle that is in use; re-run",
                )
            _CACHE[key] = emu
        return emu


def _cached_ref(path: str, bundle_id: str) -> EmulatorRef:
    return EmulatorRef(cached_emulator(path, bundle_id))


def _member_coord(members: int) -> xr.DataArray:
    return xr.DataArray(
        np.arange(members),
        dims="member",
        attrs={"long_name": "ensemble member of the emulator", "standard_name": "realization"},
    )


def _downscale_block(
    x: np.ndarray,
    f: np.ndarray,
    time: np.ndarray,
    index: np.ndarray,
    *,
    emulator: Emulator | EmulatorRef,
    members: int,
    mode: str,
    seed: int,
    file: str | None,
    check: str | None = None,
) -> np.ndarray:
    """The per-block computation: [T, C, h, w] -> [T, members, V, H, W] (see Emulator.downscale_block);
    ``check``: the output checks of the Python API (``raise``/``warn``; None: the caller checks, as apply)."""
    emu = emulator.get() if isinstance(emulator, EmulatorRef) else emulator
    if len(x) == 0:
        return np.empty((0, members, len(emu.targets), *emu.fine_grid.shape), np.float32)
    xb = np.asarray(x, np.float32)
    start = int(index[0])
    _check_finite_inputs(xb, time, emu.predictors, file)
    # the seed of each block depends on its first day only (kept below 2**63: torch generators take 64 bits)
    block_seed = (seed * 1_000_003 + start) % SEED_LIMIT
    y = emu._predict(xb, np.asarray(f, np.float32), members=members, mode=mode, seed=block_seed)
    if check is not None:
        check_output(emu, y if y.shape[1] > 1 else y[:, 0], time, check, file=file)
    return y


def _find_predictor(datasets: Sequence[xr.Dataset], name: str, file: str | None) -> xr.DataArray:
    """Predictor ``name`` from the first of ``datasets`` that holds it (else the first dataset's error)."""
    from downscale.data.io import find_variable
    from downscale.errors import MissingVariableError

    first: MissingVariableError | None = None
    for ds in datasets:
        try:
            return find_variable(ds, name, file)
        except MissingVariableError as exc:
            first = first or exc
    assert first is not None
    raise first


def _check_finite_inputs(xb: np.ndarray, time: np.ndarray, channels: list[str], file: str | None) -> None:
    """Refuse NaN or infinite predictors: the model would silently turn them into garbage."""
    bad = ~np.isfinite(xb)
    if bad.any():
        t, c, i, j = np.argwhere(bad)[0]
        date = time[t]
        raise DataError(
            f"missing (NaN) or infinite predictor value on {format_date(date)} at coarse cell ({i}, {j})",
            file=file,
            variable=str(channels[c]),
            fix="fill the gaps or drop those days from the inputs",
        )


def load(path: str | Path) -> Emulator:
    """Load an emulator bundle folder (no pickle; verified checksums)."""
    from downscale.bundle import load_bundle

    return Emulator(load_bundle(path))
