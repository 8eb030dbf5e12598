"""``downscale train|apply|transfer|evaluate|models``.

Thin by design: each command parses its arguments, calls one library function,
and turns library errors into one clean line (exit code 2) instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="downscale",
    help="Train neural emulators of regional climate models and downscale projections with them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def _run(fn: Callable[[], Any]) -> Any:
    from downscale.errors import DownscaleError

    try:
        return fn()
    except DownscaleError as exc:
        console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the emulator bundle to.")],
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train an emulator from a recipe and write its bundle."""
    from downscale.train.run import train as train_fn

    result = _run(lambda: train_fn(recipe, output, progress=progress, console=console))
    if result.scores:
        table = Table(title=f"test period skill ({next(iter(result.scores.values()))['days']} days)")
        for col in ("variable", "RMSE emulator", "RMSE bilinear", "units"):
            table.add_column(col)
        for name, s in result.scores.items():
            table.add_row(name, f"{s['rmse']:.3f}", f"{s['rmse_bilinear']:.3f}", s["units"])
        out.print(table)
    out.print(f"bundle [bold]{result.bundle_id}[/] written to {result.bundle_path} in {result.seconds:.0f} s")


@app.command()
def apply(
    bundle: Annotated[Path, typer.Argument(help="Emulator bundle folder.")],
    inputs: Annotated[list[str], typer.Argument(help="Input files, globs or directories (coarse predictors).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the downscaled NetCDF files.")],
    target_grid: Annotated[
        Path | None, typer.Option("--target-grid", help="Refuse to run unless the output grid matches this file's grid.")
    ] = None,
    scenario: Annotated[str | None, typer.Option(help="Scenario for GHG forcing (default: the inputs' experiment_id).")] = None,
    chunk_days: Annotated[int | None, typer.Option(help="Days processed at once.")] = None,
) -> None:
    """Downscale coarse inputs (e.g. CMIP files) with an emulator bundle."""
    from downscale.batch import downscale_files

    written = _run(
        lambda: downscale_files(bundle, inputs, output, target_grid=target_grid, scenario=scenario, chunk_days=chunk_days)
    )
    for path in written:
        out.print(f"wrote {path}", soft_wrap=True, highlight=False)


@app.command()
def regrid(
    inputs: Annotated[list[str], typer.Argument(help="Files, globs or directories to regrid.")],
    grid: Annotated[Path, typer.Option("--grid", help="A file on the target grid (e.g. a GCM file).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the regridded files.")],
    method: Annotated[str, typer.Option(help="bilinear, conservative, area_mean or nearest.")] = "area_mean",
) -> None:
    """Regrid files onto another grid, e.g. upscale RCM output to a GCM grid (RCMu)."""
    from downscale.data.regrid_files import regrid_files

    for path in _run(lambda: regrid_files(inputs, grid, output, method=method)):
        out.print(f"wrote {path}", soft_wrap=True, highlight=False)


@app.command()
def transfer(
    bundle: Annotated[Path, typer.Argument(help="Pretrained emulator bundle.")],
    recipe: Annotated[Path, typer.Argument(help="Transfer recipe YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the new bundle.")],
) -> None:
    """Fine-tune or few-shot transfer a bundle to a new GCM/RCM pair or domain (not available yet)."""
    from downscale.errors import NotAvailableError

    _run(_not_yet("transfer", NotAvailableError))


@app.command()
def evaluate(
    config: Annotated[Path, typer.Argument(help="Evaluation YAML file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the report.")],
) -> None:
    """Evaluate emulators against baselines across pairs, domains and periods (not available yet)."""
    from downscale.errors import NotAvailableError

    _run(_not_yet("evaluate", NotAvailableError))


def _not_yet(verb: str, error: type) -> Callable[[], None]:
    def fail() -> None:
        raise error(f"'downscale {verb}' is not available yet in this version", fix="see the project's issues for its status")

    return fail


@app.command("models")
def models_() -> None:
    """List the registered model backbones."""
    from downscale.models import list_models

    for name in list_models():
        out.print(name)


@app.command()
def describe(bundle: Annotated[Path, typer.Argument(help="Emulator bundle folder.")]) -> None:
    """Describe an emulator bundle: variables, units, grids, periods, lineage."""
    from downscale.api import load

    emu = _run(lambda: load(bundle))
    out.print(emu.describe(), highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
