"""``downscale evaluate``: every (emulator, test case) pair of a config, scored beside the baselines.

:func:`evaluate` loads each emulator, fits its baselines on its training period, reads each test case (and
its climate-change reference), predicts with every method, runs every configured metric the test allows and
writes ``DIR/metrics.csv``, ``DIR/metrics.json``, ``DIR/report.md``, ``DIR/report.html`` and
``DIR/figures/*.png``, each written atomically (a temporary file renamed into place).

Which metrics a test allows:

* **perfect** tests (predictors day-matched with the target: the upscaled RCM, or reanalysis against
  observations) -- every metric;
* **imperfect** tests (a free-running GCM: its days are not the RCM's days) -- only metrics that compare
  distributions (``needs: distribution / multivariate``) and the climate-change signal (``signal``); day-by-day
  scores would measure the weather mismatch, not the emulator, and the report says so.

A sub-daily metric (the diurnal cycle, the mean daily maximum) on daily data is skipped with a note saying
why; sub-daily data also get a figure of the mean diurnal cycle (``...__VARIABLE__diurnal_cycle.png``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from downscale.atomic import write_atomic
from downscale.data.io import step_word
from downscale.errors import DownscaleError

if TYPE_CHECKING:
    from rich.console import Console

    from downscale.emulator import Emulator
    from downscale.evaluate.cases import Predictions, TrainingBaselines
    from downscale.evaluate.config import EmulatorSpec, EvaluateConfig, TestCase
    from downscale.evaluate.metric_registry import MetricCall
    from downscale.recipe import Recipe
    from downscale.tracking import Tracker

__all__ = ["EvaluationResult", "evaluate", "rank_rows"]

logger = logging.getLogger(__name__)

IMPERFECT_NOTE = (
    "Imperfect test: the predictors come from a free-running GCM, whose days are not the RCM's days, so "
    "day-by-day scores (RMSE, temporal correlation, daily RALSD, CRPS) would measure the mismatch of the "
    "weather, not the emulator. It is scored on distributions (index biases, Wasserstein distances, spectra of "
    "time means, the pr-tas coupling) and on the climate-change signal only."
)


@dataclass
class EvaluationResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    figures: list[dict[str, Any]]
    notes: list[str]
    seconds: float
    files: list[Path] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``rank`` (1 = best) among the methods of each (emulator, test, variable, metric); ties share a rank."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["emulator"], r["test"], r["variable"], r["metric"]), []).append(r)
    for group in groups.values():

        def badness(r: dict[str, Any]) -> float:
            v = r["value"]
            if v is None or not math.isfinite(v):
                return math.inf
            return {"lower": abs(v), "higher": -v, "one": abs(v - 1.0)}[r["better"]]

        scores = sorted({round(badness(r), 12) for r in group})
        for r in group:
            b = round(badness(r), 12)
            r["rank"] = scores.index(b) + 1 if math.isfinite(b) else None
    return rows


def _training_recipe(spec: EmulatorSpec, emulator: Emulator, config: EvaluateConfig) -> Recipe:
    from downscale.recipe import load_recipe, recipe_from_dict

    if spec.recipe:
        return load_recipe(config.resolve(spec.recipe))
    return recipe_from_dict(emulator.meta.recipe, root=config.root)


def _score(
    calls: list[MetricCall],
    emulator_name: str,
    test: TestCase,
    pred: Predictions,
    ref: Predictions | None,
    variable_units: dict[str, str],
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows of every metric each variable allows; a metric that cannot score a variable's time step (a
    sub-daily metric on daily data) adds one line to ``notes`` saying why."""
    from downscale.evaluate.indices import time_step
    from downscale.evaluate.metric_registry import variable_kind

    rows: list[dict[str, Any]] = []
    base = {
        "emulator": emulator_name,
        "test": test.name,
        "title": test.label,
        "kind": test.kind,
        "domain": test.domain or "",
        "period": test.period.describe(),
    }

    def add(variable: str, method: str, call: MetricCall, value: float, units: str) -> None:
        rows.append(
            {
                **base,
                "variable": variable,
                "method": method,
                "metric": call.label,
                "value": value,
                "units": units,
                "better": call.better,
                "needs": call.needs,
            }
        )

    for call in calls:
        needs = call.needs
        if needs in ("paired", "ensemble") and not pred.matched:
            continue
        if needs == "signal" and ref is None:
            continue
        if needs == "multivariate":
            a, b = call.params.get("pair", ("pr", "tas"))
            if a not in pred.truth or b not in pred.truth:
                continue
            for method in pred.methods:
                fields = pred.realisation[method]
                if a in fields and b in fields:
                    add(f"{a}-{b}", method, call, call(fields, pred.truth), call.units("1"))
            continue
        skipped: dict[str, list[str]] = {}
        for var, truth in pred.truth.items():
            units = variable_units[var]
            if not call.applies_to(variable_kind(units)) or (call.variables and var not in call.variables):
                continue
            reason = call.skip_reason(time_step(truth)) if call.frequency == "subdaily" else None
            if reason is not None:
                skipped.setdefault(reason, []).append(var)
                continue
            if needs == "ensemble":
                for method in pred.methods:
                    if method == "emulator" and var in pred.ensemble:
                        ens = pred.ensemble[var]
                    elif call.metric.deterministic and var in pred.estimate[method]:
                        ens = pred.estimate[method][var].expand_dims(member=1)
                    else:
                        continue
                    add(var, method, call, call(ens, truth), call.units(units))
                continue
            for method in pred.methods:
                scored = pred.estimate if call.metric.estimate else pred.realisation
                if var not in scored[method]:
                    continue
                if needs == "signal":
                    if ref is None or var not in ref.realisation.get(method, {}):
                        continue
                    value = call(ref.realisation[method][var], scored[method][var], ref.truth[var], truth)
                else:
                    value = call(scored[method][var], truth)
                add(var, method, call, value, call.units(units))
        for reason, variables in skipped.items():
            if notes is not None:
                notes.append(
                    f"{emulator_name} × {test.name}: metric {call.label} skipped for {', '.join(variables)}: {reason}"
                )
    return rows


def _figures(
    pred: Predictions, ref: Predictions | None, emulator_name: str, test: TestCase, out_dir: Path
) -> list[dict[str, Any]]:
    from downscale.evaluate import figures as F
    from downscale.evaluate.indices import is_subdaily

    made = []
    for var, truth in pred.truth.items():
        fields = {m: pred.realisation[m][var] for m in pred.methods if var in pred.realisation[m]}
        where = f"{emulator_name} · {test.label} · {var}"
        todo = [
            ("bias_map", "bias of the time mean", partial(F.bias_maps, truth, fields, f"{where}: mean bias")),
            ("psd", "radially averaged power spectra", partial(F.psd_curves, truth, fields, f"{where}: spectra")),
            ("qq", "quantile-quantile plot up to P99.9", partial(F.qq_extremes, truth, fields, f"{where}: quantiles")),
        ]
        if is_subdaily(truth):
            todo.append(
                (
                    "diurnal_cycle",
                    "mean diurnal cycle (UTC hour of day) over the domain",
                    partial(F.diurnal_curves, truth, fields, f"{where}: mean diurnal cycle"),
                )
            )
        if var in pred.ensemble and pred.matched:
            todo.append(
                (
                    "rank_histogram",
                    "rank histogram of the ensemble",
                    partial(F.rank_histogram_plot, pred.ensemble[var], truth, f"{where}: rank histogram"),
                )
            )
        if ref is not None and var in ref.truth:
            hist = {m: ref.realisation[m][var] for m in ref.methods if var in ref.realisation[m]}
            todo.append(
                (
                    "cc_signal",
                    "climate-change signal (test period minus reference)",
                    partial(F.cc_signal_maps, ref.truth[var], truth, hist, fields, f"{where}: climate-change signal"),
                )
            )
        for kind, caption, make in todo:
            png = make()
            name = f"{_slug(emulator_name)}__{_slug(test.name)}__{var}__{kind}.png"
            write_atomic(out_dir / "figures" / name, png)
            made.append(
                {
                    "emulator": emulator_name,
                    "test": test.name,
                    "variable": var,
                    "kind": kind,
                    "caption": caption,
                    "path": f"figures/{name}",
                }
            )
    return made


def evaluate(
    config: EvaluateConfig | str | Path,
    out_dir: str | Path,
    *,
    progress: bool = False,
    console: Console | None = None,
    overrides: list[str] | None = None,
    command: str | None = None,
    overwrite: bool = False,
) -> EvaluationResult:
    """Run the evaluation a config (an :class:`~downscale.evaluate.config.EvaluateConfig` or a YAML path)
    describes and write its report to ``out_dir``.  ``command``: the command line that regenerates the
    report, printed in its header.

    Every phase is logged through :mod:`logging` (logger ``downscale.evaluate.runner``): INFO lines with counts
    and seconds for each emulator loaded, each test case loaded, predicted, scored and drawn, and the report
    written; a WARNING for each note (a test or a baseline skipped, and why), which also goes into the report.
    Nothing is printed: ``progress=True`` draws a Rich progress bar on ``console`` (default: Rich's console),
    which the CLI asks for on a terminal.

    ``out_dir`` follows the output contract of :mod:`downscale.outdir`, checked before anything is read: a new
    or empty folder, an interrupted evaluation's folder (rerun), or with ``overwrite`` a finished one of ours."""
    from downscale.outdir import OutputFolder

    with OutputFolder(out_dir, "evaluate", overwrite=overwrite) as output:
        result = _evaluate(
            config, Path(out_dir), progress=progress, console=console, overrides=overrides, command=command
        )
        output.finish(files=[p.name for p in result.files])
    return result


def _evaluate(
    config: EvaluateConfig | str | Path,
    out_dir: Path,
    *,
    progress: bool,
    console: Console | None,
    overrides: list[str] | None,
    command: str | None,
) -> EvaluationResult:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from downscale.data.variables import get_spec
    from downscale.emulator import load
    from downscale.evaluate.cases import fit_baselines, load_case, predict_case
    from downscale.evaluate.config import EvaluateConfig, load_evaluate_config
    from downscale.evaluate.metric_registry import create_metric
    from downscale.evaluate.report import write_report

    t0 = time.perf_counter()
    if not isinstance(config, EvaluateConfig):
        config = load_evaluate_config(config, overrides)
    out_dir = Path(out_dir)
    calls = [create_metric(m) for m in config.metrics]
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []
    pairs = [(e, t) for t in config.tests for e in config.emulators if t.emulators is None or e.name in t.emulators]
    logger.info(
        "evaluation %s: %d (emulator, test) pairs, %d metrics, baselines %s; report to %s",
        config.name,
        len(pairs),
        len(calls),
        ", ".join(config.baselines) or "none",
        out_dir,
    )

    def note(text: str) -> None:
        notes.append(text)
        logger.warning("%s", text)

    tracker = None
    if config.mlflow:
        from downscale.tracking import Tracker

        tracker = Tracker(config.mlflow, experiment=config.name, run_name=out_dir.name, params=config.to_dict())
        tracker.start()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    ]
    status = "FAILED"
    try:
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            task = bar.add_task("evaluating", total=len(pairs))
            emulators: dict[str, tuple[Emulator, TrainingBaselines]] = {}
            for i, (spec, test) in enumerate(pairs, 1):
                step = f"{spec.name} × {test.name}"
                where = f"[{i}/{len(pairs)}] {step}"
                bar.update(task, description=f"{step}: loading")
                if spec.name not in emulators:
                    t = time.perf_counter()
                    emu = load(config.resolve(spec.bundle))
                    logger.info(
                        "emulator %s: bundle %s (id %s) loaded in %.1f s",
                        spec.name,
                        spec.bundle,
                        emu.id,
                        time.perf_counter() - t,
                    )
                    t = time.perf_counter()
                    baselines = fit_baselines(emu, _training_recipe(spec, emu, config), config.baselines)
                    for n in baselines.notes:
                        note(f"{spec.name}: {n}")
                    fitted = list(dict.fromkeys(b for models in baselines.models.values() for b in models))
                    logger.info(
                        "emulator %s: baselines %s fitted on %s in %.1f s",
                        spec.name,
                        ", ".join(fitted) or "(none)",
                        ", ".join(baselines.models) or "no variable",
                        time.perf_counter() - t,
                    )
                    emulators[spec.name] = (emu, baselines)
                emu, baselines = emulators[spec.name]
                resolve = config.resolve
                t = time.perf_counter()
                try:
                    case = load_case(
                        emu,
                        test.target,
                        test.predictors,
                        test.period,
                        matched=test.kind == "perfect",
                        scenario=test.scenario,
                        resolve=resolve,
                        test=test.name,
                    )
                except DownscaleError as exc:
                    if test.emulators is not None:
                        raise
                    note(f"{spec.name} × {test.name} skipped: {exc}")
                    bar.advance(task)
                    continue
                logger.info(
                    "%s: %s test case loaded: %d %s of %s, %s, in %.1f s",
                    where,
                    test.kind,
                    case.x.sizes["time"],
                    step_word(emu.meta.frequency),
                    ", ".join(case.truth),
                    test.period.describe(),
                    time.perf_counter() - t,
                )
                bar.update(task, description=f"{step}: predicting")
                t = time.perf_counter()
                pred = predict_case(emu, case, baselines, members=config.members, seed=config.seed)
                ref = None
                if test.reference is not None:
                    r = test.reference
                    ref_case = load_case(
                        emu,
                        r.target,
                        r.predictors,
                        r.period,
                        matched=test.kind == "perfect",
                        scenario=r.scenario,
                        resolve=resolve,
                        test=f"{test.name} (reference)",
                    )
                    ref = predict_case(emu, ref_case, baselines, members=config.members, seed=config.seed)
                logger.info(
                    "%s: predicted with %d methods (%s; %d member%s)%s in %.1f s",
                    where,
                    len(pred.methods),
                    ", ".join(pred.methods),
                    config.members if emu.stochastic else 1,
                    "s" if emu.stochastic and config.members > 1 else "",
                    ""
                    if ref is None
                    else f", and on the reference ({ref_case.x.sizes['time']} {step_word(emu.meta.frequency)})",
                    time.perf_counter() - t,
                )
                units = {v: get_spec(v).human_units for v in pred.truth}
                bar.update(task, description=f"{step}: scoring")
                t = time.perf_counter()
                skips: list[str] = []
                scored = _score(calls, spec.name, test, pred, ref, units, skips)
                for text in skips:
                    note(text)
                rows += scored
                logger.info("%s: %d scores computed in %.1f s", where, len(scored), time.perf_counter() - t)
                if config.figures:
                    bar.update(task, description=f"{step}: figures")
                    t = time.perf_counter()
                    drawn = _figures(pred, ref, spec.name, test, out_dir)
                    figures += drawn
                    logger.info("%s: %d figures drawn in %.1f s", where, len(drawn), time.perf_counter() - t)
                bar.advance(task)
        rank_rows(rows)
        seconds = time.perf_counter() - t0
        meta = {
            "name": config.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
            "notes": notes,
            "command": command,
            "imperfect_note": IMPERFECT_NOTE,
            "config": config.to_dict(),
            "emulators": {
                name: {
                    "bundle_id": e.id,
                    "bundle": str(next(s.bundle for s in config.emulators if s.name == name)),
                    "periods": e.meta.periods,
                }
                for name, (e, _) in emulators.items()
            },
        }
        files = write_report(out_dir, config, rows, figures, meta)
        _remove_stale_figures(out_dir, figures)
        logger.info(
            "report written to %s: %d scores, %d figures, %d note(s); %s in %.1f s",
            out_dir / "report.html",
            len(rows),
            len(figures),
            len(notes),
            ", ".join(p.name for p in files),
            time.perf_counter() - t0,
        )
        if tracker is not None:
            _log_mlflow(tracker, rows)
        status = "FINISHED"
    finally:
        if tracker is not None:
            tracker.finish(out_dir if status == "FINISHED" else None, status=status)
    return EvaluationResult(out_dir, rows, figures, notes, time.perf_counter() - t0, files)


def _remove_stale_figures(out_dir: Path, figures: list[dict[str, Any]]) -> None:
    """Remove the figures of an earlier run into the same folder that this run did not make (only files named
    as this module names them: ``EMULATOR__TEST__VARIABLE__KIND.png``)."""
    made = {f["path"] for f in figures}
    for path in (out_dir / "figures").glob("*__*__*__*.png"):
        if f"figures/{path.name}" not in made:
            path.unlink(missing_ok=True)


def _log_mlflow(tracker: Tracker, rows: list[dict[str, Any]]) -> None:
    mlflow = tracker._mlflow
    if mlflow is None:
        return
    metrics = {}
    for r in rows:
        v = r["value"]
        if v is not None and math.isfinite(v):
            key = ".".join(_slug(str(r[k])) for k in ("emulator", "test", "variable", "method", "metric"))
            metrics[key] = float(v)
    items = list(metrics.items())
    for i in range(0, len(items), 500):
        mlflow.log_metrics(dict(items[i : i + 500]))
    logger.info("logged %d metrics to MLflow (%s)", len(items), tracker.uri)
