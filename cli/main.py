"""``downscale train|apply|transfer|evaluate|models``.

Thin by design: each command parses its arguments, calls one library function,
and turns library errors into one clean line (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from downscale.cli.logs import setup_logging, verbosity

app = typer.Typer(
    name="downscale",
    help="Train neural emulators of regional climate models and downscale projections with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
#: results (tables, files written); to a file or pipe without a width limit, so that tables are never cut
out = Console() if sys.stdout.isatty() else Console(width=1000)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True, help="More detail in the log (debug).")] = 0,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors in the log.")] = False,
) -> None:
    """Train neural emulators of regional climate models and downscale projections with them."""
    global console, out
    # the streams of this invocation (a test runner replaces them between invocations)
    console = Console(stderr=True)
    out = Console() if sys.stdout.isatty() else Console(width=1000, file=sys.stdout)
    setup_logging(console, verbose=verbose, quiet=quiet)


def _bar(progress: bool) -> bool:
    """A progress bar only where someone watches it: on a terminal (the log has one line per epoch anyway)."""
    return progress and console.is_terminal


OVERWRITE = typer.Option(
    "--overwrite", help="Replace an existing output folder that downscale wrote (never a folder of yours)."
)


def _run(fn: Callable[[], Any], output: Path | None = None) -> Any:
    """Call ``fn``; bad input (exit 2), faults (exit 1) and an interruption (exit 130) each give one line."""
    from downscale.errors import DownscaleError

    try:
        return fn()
    except DownscaleError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("interrupted; rerun the same command to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        line = fault_line(exc, output)
        if verbosity() > 0:
            console.print_exception() if console.is_terminal else traceback.print_exc(file=sys.stderr)
        _error(line or f"internal error {type(exc).__name__}: {exc}; rerun with -v for the traceback")
        raise typer.Exit(1) from None


def _number(text: str | None) -> Any:
    """A number typed on the command line, as the library's option checks judge it (``1e20`` is a float they
    refuse by name with the fix, not a usage box); text that is no number is passed on for the same checks."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _error(text: str) -> None:
    console.print(f"[bold red]error:[/] {' '.join(text.split())}", markup=True, highlight=False, soft_wrap=True)


_RESUME = "rerun the same command to resume"


def fault_line(exc: BaseException, output: Path | None = None) -> str | None:
    """One line for a fault of the machine (disk full, read-only, permission, memory, no GPU), or None."""
    import errno

    where = getattr(exc, "filename", None) or output
    at = f"{where}: " if where else ""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        gpu = "GPU " if type(exc).__name__ == "OutOfMemoryError" else ""
        return (
            f"out of {gpu}memory ({type(exc).__name__}{': ' + text if text else ''}). Fix: use a smaller "
            f"train.batch_size (or apply --chunk-days), or a machine with more memory, then {_RESUME}"
        )
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text:
            return f"{at}no space left on the device (disk full or quota reached). Fix: free space there or choose another -o folder, then {_RESUME}"
        if code == errno.EROFS:
            return f"{at}read-only file system. Fix: choose a writable -o folder, then {_RESUME}"
        if code in (errno.EACCES, errno.EPERM):
            return (
                f"{at}permission denied. Fix: choose a folder you may write to, or fix its permissions, then {_RESUME}"
            )
        return f"{at}{exc.strerror or text} (errno {code}). Fix: check the path and the disk, then {_RESUME}"
    if isinstance(exc, (RuntimeError, AssertionError)):
        if "No space left" in text or "file write failed" in text or "failed writing file" in text:
            return (
                f"{at}could not write a file ({text[:200]}); the disk is probably full. Fix: free space, then {_RESUME}"
            )
        if "CUDA" in text or "cuda" in text or "NVIDIA driver" in text:
            return (
                f"no usable CUDA GPU ({text[:200]}). Fix: run on a machine with a CUDA GPU, or use the CPU "
                "(--set train.device=cpu)"
            )
    return None


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the emulator bundle to.")],
    overwrite: Annotated[bool, OVERWRITE] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. --set train.epochs=8 (repeatable).")
    ] = None,
) -> None:
    """Train an emulator from a recipe and write its bundle."""
    from downscale.outdir import check_output
    from downscale.recipe import load_recipe
    from downscale.train.run import train as train_fn

    def run() -> Any:
        check_output(output, "train", overwrite=overwrite, bundle=True)  # before the recipe's data are globbed
        return train_fn(
            load_recipe(recipe, overrides), output, progress=_bar(progress), console=console, overwrite=overwrite
        )

    result = _run(run, output)
    _print_result(result)


def _print_result(result: Any) -> None:
    """The test-period skill table and the bundle written (train and transfer)."""
    if result.scores:
        methods = list(dict.fromkeys(r["method"] for r in result.scores))
        table = Table(title=f"test period skill ({result.test_days} {getattr(result, 'step_unit', 'days')})")
        for col in ("variable", "metric", "units", *methods):
            table.add_column(col)
        value = {(r["variable"], r["metric"], r["method"]): r["value"] for r in result.scores}
        for var, metric, units in dict.fromkeys((r["variable"], r["metric"], r["units"]) for r in result.scores):
            cells = (f"{value[(var, metric, m)]:.3f}" if (var, metric, m) in value else "–" for m in methods)
            table.add_row(var, metric, units, *cells)
        out.print(table)
        for note in getattr(result, "notes", []):
            out.print(f"note: {note}", highlight=False, soft_wrap=True)
    out.print(f"bundle [bold]{result.bundle_id}[/] written to {result.bundle_path} in {result.seconds:.0f} s")


@app.command()
def apply(
    bundle: Annotated[Path, typer.Argument(help="Emulator bundle folder.")],
    inputs: Annotated[list[str], typer.Argument(help="Input files, globs or directories (CMIP5/CMIP6 daily files).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the downscaled NetCDF files.")],
    target_grid: Annotated[
        Path | None,
        typer.Option("--target-grid", help="Refuse to run unless the output grid matches this file's grid."),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="Scenario for GHG forcing (default: the inputs' experiment).")
    ] = None,
    chunk_days: Annotated[
        str | None,
        typer.Option(help="Days per chunk (default: the recipe's apply.chunk_days).", metavar="INTEGER"),
    ] = None,
    halo: Annotated[
        str | None,
        typer.Option(
            metavar="FLOAT",
            help="Margin in degrees read around the domain (default: the recipe's apply.halo, else 2 coarse cells).",
        ),
    ] = None,
    members: Annotated[
        str | None, typer.Option(help="Ensemble members per day (a 'member' dimension).", metavar="INTEGER")
    ] = None,
    mode: Annotated[str, typer.Option(help="mean or sample: how each head's prediction is read.")] = "mean",
    seed: Annotated[
        str,
        typer.Option(
            help="Seed of the noise and samples (each chunk seeded from it and its start).", metavar="INTEGER"
        ),
    ] = "0",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run chunks on dask.distributed: local:N (N local workers) or tcp://HOST:PORT (a scheduler)."
        ),
    ] = None,
    on_implausible: Annotated[
        str, typer.Option(help="error: stop at an implausible value; warn: write it, flag it and warn.")
    ] = "error",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Downscale CMIP projections with an emulator bundle: one CF file per variable and input period.

    Resumable: re-run the same command after an interruption and finished chunks are not recomputed."""
    from downscale.apply import downscale_files

    result = _run(
        lambda: downscale_files(
            bundle,
            inputs,
            output,
            target_grid=target_grid,
            scenario=scenario,
            chunk_days=_number(chunk_days),
            halo=_number(halo),
            members=_number(members),
            mode=mode,
            seed=_number(seed),
            scheduler=scheduler,
            on_implausible=on_implausible,
            progress=_bar(progress),
            console=console,
        ),
        output,
    )
    for path in result:
        verb = "kept" if path in result.kept_files else "wrote"
        out.print(f"{verb} {path}", soft_wrap=True, highlight=False)
    out.print(
        f"{result.computed} chunks computed, {result.reused} reused; {len(result) - result.kept} files written, "
        f"{result.kept} already complete"
        + (f"; {result.violations} implausible values flagged" if result.violations else ""),
        highlight=False,
    )


@app.command()
def regrid(
    inputs: Annotated[list[str], typer.Argument(help="Files, globs or directories to regrid.")],
    grid: Annotated[Path, typer.Option("--grid", help="A file on the target grid (e.g. a GCM file).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the regridded files.")],
    method: Annotated[str, typer.Option(help="bilinear, conservative, area_mean or nearest.")] = "area_mean",
    overwrite: Annotated[bool, OVERWRITE] = False,
) -> None:
    """Regrid files onto another grid, e.g. upscale RCM output to a GCM grid (RCMu)."""
    from downscale.data.regrid_files import regrid_files

    for path in _run(lambda: regrid_files(inputs, grid, output, method=method, overwrite=overwrite), output):
        out.print(f"wrote {path}", soft_wrap=True, highlight=False)


@app.command()
def transfer(
    bundle: Annotated[Path, typer.Argument(help="Pretrained emulator bundle.")],
    recipe: Annotated[Path, typer.Argument(help="Transfer recipe YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the new bundle.")],
    overwrite: Annotated[bool, OVERWRITE] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe key, e.g. --set data.shots.days=10 (repeatable)."),
    ] = None,
) -> None:
    """Fine-tune a pretrained bundle on a new GCM/RCM pair or domain (k-shot: data.shots; zero-shot: days 0)."""
    from downscale.bundle import load_bundle
    from downscale.outdir import check_output
    from downscale.transfer.run import load_transfer_recipe
    from downscale.transfer.run import transfer as transfer_fn

    def run() -> Any:
        check_output(output, "transfer", overwrite=overwrite, bundle=True)
        parent = load_bundle(bundle)
        return transfer_fn(
            parent,
            load_transfer_recipe(recipe, parent, overrides),
            output,
            progress=_bar(progress),
            console=console,
            overwrite=overwrite,
        )

    result = _run(run, output)
    _print_result(result)


@app.command()
def evaluate(
    config: Annotated[Path, typer.Argument(help="Evaluation YAML file (emulators, test cases, metrics).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the report.")],
    overwrite: Annotated[bool, OVERWRITE] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key, e.g. --set figures=false (repeatable).")
    ] = None,
) -> None:
    """Evaluate emulators beside the baselines over a matrix of test cases; write report.html/.md, metrics.csv/.json
    and figures/ to the output folder."""
    from downscale.evaluate.runner import evaluate as evaluate_fn

    command = f"downscale evaluate {config} -o {output}" + "".join(f" --set {o}" for o in overrides or [])
    result = _run(
        lambda: evaluate_fn(
            config,
            output,
            progress=_bar(progress),
            console=console,
            overrides=overrides,
            command=command,
            overwrite=overwrite,
        ),
        output,
    )
    out.print(
        f"{len(result.rows)} scores, {len(result.figures)} figures; report written to "
        f"{result.out_dir / 'report.html'} in {result.seconds:.0f} s",
        highlight=False,
        soft_wrap=True,
    )


@app.command("models")
def models_() -> None:
    """List the registered model backbones."""
    from downscale.models import list_models

    for name in list_models():
        out.print(name)


@app.command()
def describe(bundle: Annotated[Path, typer.Argument(help="Emulator bundle folder.")]) -> None:
    """Describe an emulator bundle: variables, units, grids, periods, lineage."""
    from downscale.emulator import load

    emu = _run(lambda: load(bundle))
    out.print(emu.describe(), highlight=False, markup=False, soft_wrap=True)  # "[kg m-2 s-1]" is not markup


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
