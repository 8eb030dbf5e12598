"""``downscale apply``: plan the chunks of every projection, run them (serially or on dask.distributed), check
them, store them, and assemble the output files -- resumably, with a progress bar.

The computation of a chunk is :meth:`downscale.emulator.Emulator.coarse_fields` (region subset, regridding, units)
followed by :meth:`downscale.emulator.Emulator.downscale_block` (forcings, normalisation, model, seeded per chunk
start): the very code behind the lazy ``Emulator.downscale`` of the Python API.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from downscale.apply import store
from downscale.apply.inputs import Projection, scan
from downscale.data.calendar import format_date
from downscale.data.io import steps_per_day
from downscale.errors import DataError, GridMismatchError

__all__ = ["ApplyResult", "ChunkTask", "compute_chunk", "downscale_files"]

_FORMAT = "downscale-apply-1"
logger = logging.getLogger(__name__)


class ApplyResult(list):
    """The output files (a list of paths), with counts: ``computed`` and ``reused`` chunks, ``kept`` files
    (already complete from an earlier run of the same command, listed in ``kept_files``) and ``violations``."""

    def __init__(self) -> None:
        super().__init__()
        self.computed = self.reused = self.kept = self.violations = 0
        self.kept_files: list[Path] = []


@dataclass
class ChunkTask:
    """One chunk of one projection: days ``[start, stop)`` of its time axis (picklable)."""

    bundle: str
    bundle_id: str
    path: str  # the chunk file
    files: dict[str, list[str]]  # predictor -> files holding these days
    sources: dict[str, tuple[str, list[str]]]  # what to read: key -> (variable, files); see Projection.sources_for
    times: np.ndarray
    start: int
    stop: int
    attrs: dict[str, Any]
    scenario: str
    halo: float
    members: int | None
    mode: str
    seed: int
    on_implausible: str
    label: str  # for messages: the projection


@dataclass
class _Plan:
    projection: Projection
    run_id: str
    outputs: list[tuple[store.OutputSpec, list[ChunkTask], int]] = field(default_factory=list)  # spec, todo, reused


def downscale_files(
    bundle: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    target_grid: str | Path | None = None,
    scenario: str | None = None,
    chunk_days: int | None = None,
    halo: float | None = None,
    members: int | None = None,
    mode: str = "mean",
    seed: int = 0,
    scheduler: str | None = None,
    on_implausible: str = "error",
    progress: bool = False,
    console: Any = None,
    warn: Callable[[str], None] | None = None,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> ApplyResult:
    """Downscale the projections in ``inputs`` with ``bundle`` into ``out_dir``; returns the output files.

    ``scheduler``: None (serial, this process), ``local:N`` (a dask.distributed LocalCluster of N worker
    processes) or ``tcp://host:port`` (an existing dask.distributed scheduler, e.g. of a dask-jobqueue
    SLURMCluster; inputs and ``out_dir`` must be on a file system the workers see).
    ``on_implausible``: ``error`` (stop at the first implausible value) or ``warn`` (write and flag it).
    ``warn`` receives warning lines (default: the ``downscale.apply.runner`` logger's warnings);
    ``on_chunk(label, start, stop)`` is called in this process after each chunk is stored (a progress hook).
    """
    from downscale.data.grids import Grid
    from downscale.data.io import expand_inputs, open_dataset
    from downscale.emulator import load
    from downscale.emulator.runtime import check_options
    from downscale.outdir import OutputError, OutputFolder

    if on_implausible not in ("error", "warn"):
        raise DataError("unknown --on-implausible choice", found=on_implausible, expected="error or warn")
    # every option before the bundle or any input is read
    opts = check_options(members=members, mode=mode, seed=seed, halo=halo, chunk_days=chunk_days, cli=True)
    members, seed = opts["members"], opts["seed"]
    warn = warn or logger.warning
    out_dir = Path(out_dir)
    # the output contract (a new path, or a folder that apply wrote; writable; one run at a time) before the
    # bundle or any input is read: a user's folder or file is refused, a folder this run made is removed on error
    with OutputFolder(out_dir, "apply", accumulate=True, warn=warn) as output:
        emu = load(bundle)
        bundle_path = Path(bundle).resolve()
        chunk_days = opts["chunk_days"] if opts["chunk_days"] is not None else int(emu.meta.apply.chunk_days)
        halo = emu.default_halo() if opts["halo"] is None else opts["halo"]
        # one chunk in memory at a time (the next one's predictors are read meanwhile): refuse what cannot fit
        emu.check_memory(chunk_days * steps_per_day(emu.meta.frequency), members, cli=True, what=" for one chunk")
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
        projections = scan(expand_inputs(inputs), emu.predictors, emulator=emu, halo=halo)
        for p in projections:
            for note in p.notes:
                warn(f"{p.name}: {note}; only the common days are downscaled")
        result = ApplyResult()
        work = out_dir / store.WORK_NAME
        store.clean_tmp(work)
        options = {
            "chunk_days": chunk_days,
            "halo": halo,
            "members": members,
            "mode": mode,
            "seed": seed,
            "scenario": scenario,
            "regrid": emu.meta.regrid,
        }
        plans = [_plan(emu, bundle_path, p, out_dir, options, on_implausible, result, warn) for p in projections]
        for plan in plans:
            for spec, _, _ in plan.outputs:
                for path in (out_dir / n for n in spec.names.values()):
                    if not path.is_file() or (run_id := store.run_id_of(path)) == plan.run_id:
                        continue
                    if run_id is None:  # not a file of ours: never replaced
                        raise OutputError(
                            "a file that downscale apply did not write has the name of an output of this run",
                            file=path,
                            fix="move it out of the output folder, or choose another -o",
                        )
                    warn(f"replacing {path.name}: it was written by another run (other inputs, bundle or options)")
        _execute(emu, plans, out_dir, scheduler, on_implausible, progress, console, warn, result, on_chunk)
        for plan in plans:
            shutil.rmtree(work / plan.run_id, ignore_errors=True)
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()
        output.finish(files=len(result))
    return result


def _run_id(emu: Any, projection: Projection, options: dict[str, Any]) -> str:
    files = sorted({p for fs in projection.files.values() for p in fs})
    stats = []
    for p in files:
        st = Path(p).stat()
        stats.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps(
        {
            "format": _FORMAT,
            "bundle": emu.id,
            "options": options,
            "files": stats,
            "key": list(projection.key),
            "days": int(projection.time.size),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _plan(
    emu: Any,
    bundle: Path,
    proj: Projection,
    out_dir: Path,
    options: dict[str, Any],
    on_implausible: str,
    result: ApplyResult,
    warn: Callable[[str], None] | None = None,
) -> _Plan:
    from downscale import __version__

    run_id = _run_id(emu, proj, options)
    plan = _Plan(proj, run_id)
    domain = store.domain_name(emu.meta, emu.fine_grid.id)
    scenario = options["scenario"] or (
        proj.experiment if not proj.experiment.startswith("unknown-") else emu.meta.scenario
    )
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items() if v is not None and k != "regrid")
    history = (
        f"{now}: downscale apply {bundle.name} ({sum(len(v) for v in proj.files.values())} input files) "
        f"{argv}; bundle {emu.id}; downscale {__version__}"
    )
    if proj.attrs.get("history"):
        history += "\n" + str(proj.attrs["history"])
    attrs = {
        "Conventions": "CF-1.8",
        "history": history,
        "source": f"downscale {__version__} emulator '{emu.name}' (bundle {emu.id})",
        "product": "downscaled-output",
        "frequency": emu.meta.frequency,
        "domain": domain,
        "creation_date": now,
        "downscale_bundle_id": emu.id,
        "downscale_emulator": emu.name,
        "downscale_run_id": run_id,
        "downscale_scenario": scenario,
        "driving_model_id": proj.model,
        "driving_experiment_name": proj.experiment,
        "driving_experiment": proj.experiment,
        "driving_model_ensemble_member": proj.member,
        "driving_project_id": str(proj.attrs.get("project_id", proj.attrs.get("mip_era", ""))) or "unknown",
    }
    if options["members"]:
        attrs["downscale_members"] = int(options["members"])
        attrs["downscale_mode"] = options["mode"]
        attrs["downscale_seed"] = int(options["seed"])
    work = out_dir / store.WORK_NAME / run_id
    members = options["members"]
    for period in proj.periods:
        names = {
            t: store.output_name(t, domain, proj.key, emu.name, period.label, emu.meta.frequency) for t in emu.targets
        }
        step = options["chunk_days"] * steps_per_day(emu.meta.frequency)  # time steps per chunk
        bounds = [(a, min(a + step, period.stop)) for a in range(period.start, period.stop, step)]
        period_dir = work / period.label
        spec = store.OutputSpec(
            bundle=str(bundle),
            bundle_id=emu.id,
            run_id=run_id,
            out_dir=str(out_dir),
            period_dir=str(period_dir),
            chunks=bounds,
            times=proj.time[period.start : period.stop],
            calendar=proj.calendar,
            time_units=proj.time_units,
            names=names,
            attrs=attrs,
            members=members,
        )
        if all(store.run_id_of(out_dir / n) == run_id for n in names.values()):
            result.kept += len(names)
            result.extend(out_dir / n for n in names.values())
            result.kept_files.extend(out_dir / n for n in names.values())
            store.log_line(out_dir, f"kept {proj.name} {period.label} (complete)")
            continue
        files, sources = proj.files_for(period), proj.sources_for(period)
        todo, reused = [], 0
        lead = (members,) if members else ()
        for a, b in bounds:
            path = store.chunk_path(period_dir, a, b)
            if store.chunk_done(path, (b - a, *lead, len(emu.targets), *emu.fine_grid.shape), warn):
                reused += 1
                chunk_info = store.read_chunk_meta(path)
                if chunk_info.get("violations") and on_implausible == "error":
                    from downscale.apply.sanity import Violation

                    raise Violation.from_dict(chunk_info["violations"][0]).error(file=proj.name)
                store.log_line(out_dir, f"reused chunk {proj.name} {a}-{b}")
                continue
            todo.append(
                ChunkTask(
                    bundle=str(bundle),
                    bundle_id=emu.id,
                    path=str(path),
                    files=files,
                    sources=sources,
                    times=proj.time[a:b],
                    start=a,
                    stop=b,
                    attrs=dict(proj.attrs),
                    scenario=scenario,
                    halo=options["halo"],
                    members=members,
                    mode=options["mode"],
                    seed=options["seed"],
                    on_implausible=on_implausible,
                    label=proj.name,
                )
            )
        plan.outputs.append((spec, todo, reused))
        result.reused += reused
    return plan


# ------------------------------------------------------------------------------------------- a chunk
_OPENED: OrderedDict[tuple, dict[str, Any]] = OrderedDict()


def _open_sources(sources: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
    """The variables of a set of files, lazily (per process, the last few sets are kept open)."""
    from downscale.data.io import open_variable

    key = tuple((k, v, tuple(f)) for k, (v, f) in sources.items())
    if key not in _OPENED:
        while len(_OPENED) >= 2:
            _OPENED.popitem(last=False)
            gc.collect()  # close the files now (xarray closes them when their datasets are collected)
        with _small_chunk_cache():
            _OPENED[key] = {k: open_variable(fs, var, canonical=False)[0].rename(k) for k, (var, fs) in sources.items()}
    _OPENED.move_to_end(key)
    return _OPENED[key]


@contextlib.contextmanager
def _small_chunk_cache() -> Iterator[None]:
    """Open files with a 4 MiB HDF5 chunk cache per variable instead of netCDF's 64 MiB: each chunk is read
    once, and a big cache per open file would make memory grow with the number of files."""
    try:
        import netCDF4
        from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK
    except ImportError:  # pragma: no cover
        yield
        return
    with NETCDF4_PYTHON_LOCK:
        before = netCDF4.get_chunk_cache()
        netCDF4.set_chunk_cache(4 << 20, 257, before[2])
    try:
        yield
    finally:
        with NETCDF4_PYTHON_LOCK:
            netCDF4.set_chunk_cache(*before)


def _select_days(da: Any, times: np.ndarray) -> Any:
    idx = da.indexes["time"].get_indexer(times)
    if (idx < 0).any():
        raise DataError(
            "a day of the projection is missing from a predictor",
            variable=str(da.name),
            found=format_date(times[int(np.flatnonzero(idx < 0)[0])]),
            fix="check the input files",
        )
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return da.isel(time=slice(int(idx[0]), int(idx[0]) + idx.size))  # a slice: only these days are read
    return da.isel(time=idx)


def load_chunk(task: ChunkTask) -> np.ndarray:
    """The coarse predictors of one chunk [T, C, h, w]: each source read once (only the days and the region),
    then :meth:`Emulator.coarse_fields` in memory (levels, units, regridding)."""
    import dask
    import xarray as xr

    from downscale.data.grids import Grid
    from downscale.data.region import read_halo, subset_region
    from downscale.emulator import cached_emulator

    emu = cached_emulator(task.bundle, task.bundle_id)
    by_grid: dict[str, dict[str, Any]] = {}  # one dataset per grid: merging two grids would pad both with NaN
    with _NC_IO, dask.config.set(scheduler="synchronous"):
        for key, da in _open_sources(task.sources).items():
            da = _select_days(da, task.times)
            grid = Grid.from_dataset(da)
            if grid.id != emu.coarse_grid.id and grid.kind == "rectilinear":
                da, grid = subset_region(da, grid, emu.coarse_grid, read_halo(grid, task.halo))
            by_grid.setdefault(grid.id, {})[key] = da.load().assign_coords(time=task.times)
        datasets = [xr.Dataset(data, attrs=task.attrs) for data in by_grid.values()]
        return np.asarray(emu.coarse_fields(datasets, halo=task.halo).values, np.float32)


def finish_chunk(task: ChunkTask, x: np.ndarray) -> dict[str, Any]:
    """Downscale, check and store one chunk whose predictors are ``x``."""
    from downscale.apply.sanity import check_chunk, plausible_bounds
    from downscale.emulator import cached_emulator

    t0 = time.perf_counter()
    emu = cached_emulator(task.bundle, task.bundle_id)
    first = next(iter(task.files.values()))[0]
    y = emu.downscale_block(
        x,
        task.times,
        start=task.start,
        scenario=task.scenario,
        members=task.members,
        mode=task.mode,
        seed=task.seed,
        file=first,
    )
    units = {t.name: t.units for t in emu.meta.targets}
    found = check_chunk(y, task.times, emu.targets, plausible_bounds(emu.meta), units, emu.valid_mask, emu.fine_grid)
    if found and task.on_implausible == "error":
        raise found[0].error(file=task.label)
    store.write_chunk(
        Path(task.path),
        y,
        {
            "violations": [v.to_dict() for v in found],
            "start": task.start,
            "stop": task.stop,
            "seconds": time.perf_counter() - t0,
        },
    )
    return {"path": task.path, "days": task.stop - task.start, "violations": [v.to_dict() for v in found]}


def compute_chunk(task: ChunkTask) -> dict[str, Any]:
    """Compute, check and store one chunk (in this process or on a dask.distributed worker)."""
    info = finish_chunk(task, load_chunk(task))
    release_memory()
    return info


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it per thread arena otherwise, and peak RSS
    would creep up with the number of chunks and files)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None

# netCDF4/HDF5 is not thread-safe: the read-ahead thread and the writer thread must not touch NetCDF files at
# the same time (concurrent access segfaulted).  Model inference still overlaps with either.
_NC_IO = threading.RLock()


def assemble_output(spec: store.OutputSpec) -> list[tuple[str, Path, list[dict[str, Any]]]]:
    """Assemble one period's files (runs in this process or on a worker)."""
    from downscale.emulator import cached_emulator

    emu = cached_emulator(spec.bundle, spec.bundle_id)
    with _NC_IO:
        written = store.assemble(spec, emu)
    release_memory()
    return written


# ------------------------------------------------------------------------------------------- execution
def _execute(
    emu: Any,
    plans: list[_Plan],
    out_dir: Path,
    scheduler: str | None,
    on_implausible: str,
    progress: bool,
    console: Any,
    warn: Callable[[str], None],
    result: ApplyResult,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> None:
    from downscale.apply.sanity import Violation

    outputs = [(plan, spec, todo) for plan in plans for spec, todo, _ in plan.outputs]
    n_chunks = sum(len(todo) for _, _, todo in outputs)
    n_days = sum(t.stop - t.start for _, _, todo in outputs for t in todo)
    bar = _Progress(progress, console, n_chunks, n_days, len(outputs) * len(emu.targets))

    def chunk_finished(task: ChunkTask, info: dict[str, Any]) -> None:
        result.computed += 1
        store.log_line(out_dir, f"computed chunk {task.label} {task.start}-{task.stop}")
        for v in info["violations"]:
            result.violations += int(v["count"])
            warn(f"{task.label}: {Violation.from_dict(v).describe()} (written and flagged: --on-implausible warn)")
        bar.chunk(info["days"])
        if on_chunk is not None:
            on_chunk(task.label, task.start, task.stop)

    def files_finished(written: list[tuple[str, Path, list[dict[str, Any]]]]) -> None:
        for _, path, _ in written:
            result.append(path)
            store.log_line(out_dir, f"wrote {path.name}")
            bar.file()

    with bar:
        if not outputs:
            return
        if scheduler is None or scheduler in ("", "serial", "none"):
            _execute_serial(outputs, chunk_finished, files_finished)
        else:
            _execute_distributed(scheduler, outputs, chunk_finished, files_finished)


def _execute_serial(outputs: list, chunk_finished: Callable, files_finished: Callable) -> None:
    """In this process, as a pipeline: the next chunk's inputs are read, and finished periods' files are
    compressed and written, in two background threads while the model runs (its operations release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    flat = [(i, task) for i, (_, _, todo) in enumerate(outputs) for task in todo]
    last = {i: todo[-1] for i, (_, _, todo) in enumerate(outputs) if todo}
    with (
        ThreadPoolExecutor(1, thread_name_prefix="apply-read") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="apply-write") as writer,
    ):
        writes = [writer.submit(assemble_output, spec) for i, (_, spec, todo) in enumerate(outputs) if not todo]
        ahead = reader.submit(load_chunk, flat[0][1]) if flat else None
        try:
            for k, (i, task) in enumerate(flat):
                assert ahead is not None  # submitted for every task of flat
                x = ahead.result()
                ahead = reader.submit(load_chunk, flat[k + 1][1]) if k + 1 < len(flat) else None
                chunk_finished(task, finish_chunk(task, x))
                del x
                release_memory()
                if last[i] is task:
                    writes.append(writer.submit(assemble_output, outputs[i][1]))
                while writes and writes[0].done():
                    files_finished(writes.pop(0).result())
            for fut in writes:
                files_finished(fut.result())
        except BaseException:
            for pending in [ahead, *writes]:
                if pending is not None:
                    pending.cancel()
            raise


def _client(scheduler: str) -> tuple[Any, Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DataError(
            "--scheduler needs dask.distributed",
            found=scheduler,
            fix="pip install 'downscale[distributed]' (distributed, dask-jobqueue)",
        ) from None
    if scheduler.startswith("local"):
        n = scheduler.partition(":")[2]
        try:
            workers = int(n) if n else max(1, (os.cpu_count() or 2) // 2)
        except ValueError:
            raise DataError("bad --scheduler", found=scheduler, expected="local:N, e.g. local:4") from None
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    if "://" not in scheduler:
        raise DataError(
            "bad --scheduler",
            found=scheduler,
            expected="local:N or a dask.distributed scheduler address (tcp://host:port)",
        )
    try:
        return Client(scheduler, timeout="30s"), None
    except OSError as exc:
        raise DataError(
            "cannot reach the dask scheduler",
            found=f"{scheduler} ({exc})",
            fix="start the cluster first (dask-jobqueue: SLURMCluster(...).scheduler_address)",
        ) from None


def _execute_distributed(scheduler: str, outputs: list, chunk_finished: Callable, files_finished: Callable) -> None:
    """Chunks (and the assembly of each period's files) as dask.distributed tasks; earliest periods first."""
    import uuid

    from distributed import as_completed

    client, cluster = _client(scheduler)
    run = uuid.uuid4().hex[:8]
    try:
        futures = as_completed()
        owner: dict[Any, tuple[str, Any]] = {}
        waiting: dict[int, int] = {}
        order = 0
        for i, (_, spec, todo) in enumerate(outputs):
            waiting[i] = len(todo)
            for task in todo:
                fut = client.submit(
                    compute_chunk, task, pure=False, priority=-order, key=f"downscale-chunk-{run}-{order}"
                )
                owner[fut] = ("chunk", (i, task))
                futures.add(fut)
                order += 1
            if not todo:
                fut = client.submit(assemble_output, spec, pure=False, priority=1)
                owner[fut] = ("files", i)
                futures.add(fut)
        for fut in futures:
            kind, what = owner.pop(fut)
            try:
                value = fut.result()
            except BaseException:
                for other in owner:
                    other.cancel()
                raise
            if kind == "chunk":
                i, task = what
                chunk_finished(task, value)
                waiting[i] -= 1
                if waiting[i] == 0:
                    nxt = client.submit(assemble_output, outputs[i][1], pure=False, priority=1)
                    owner[nxt] = ("files", i)
                    futures.add(nxt)
            else:
                files_finished(value)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Progress:
    """A Rich progress bar over chunks and files, with the ETA and simulated years per minute."""

    def __init__(self, enabled: bool, console: Any, n_chunks: int, n_days: int, n_files: int) -> None:
        self.enabled = enabled and (n_chunks or n_files)
        self.t0 = time.perf_counter()
        self.days = 0
        self.n_chunks, self.done_chunks = n_chunks, 0
        if not self.enabled:
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.chunks = self.progress.add_task("chunks", total=max(n_days, 1), count=f"0/{n_chunks}", rate="")
        self.files = self.progress.add_task("files ", total=max(n_files, 1), count=f"0/{n_files}", rate="")
        self.n_files, self.done_files = n_files, 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def chunk(self, days: int) -> None:
        self.days += days
        self.done_chunks += 1
        if self.enabled:
            minutes = (time.perf_counter() - self.t0) / 60.0
            rate = f"{self.days / 365.25 / minutes:.1f} sim-years/min" if minutes > 0 else ""
            self.progress.update(self.chunks, advance=days, count=f"{self.done_chunks}/{self.n_chunks}", rate=rate)

    def file(self) -> None:
        if self.enabled:
            self.done_files += 1
            self.progress.update(self.files, advance=1, count=f"{self.done_files}/{self.n_files}")
