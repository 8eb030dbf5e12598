"""``downscale train``: recipe → paired data → normaliser → model → engine → bundle → test-period skill.

:func:`train` is five named steps, the same for every run; what differs between a run from scratch and a
transfer is the *plan* (:mod:`downscale.train.plan`), called at fixed points:

1. :func:`prepare_data` -- pair the data, split the periods (or draw the k-shot days), fit the normaliser,
   materialise the samples (and mix further sources);
2. :func:`build_model` -- the heads (criterion) and the backbone;
3. :func:`fit_model` -- the one engine, resumable from ``<out_dir>.ckpt/``;
4. :func:`make_bundle` -- the typed metadata, weights and arrays, the wet-day thresholds;
5. :func:`score_bundle` -- the skill table on the test period beside the baselines.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from downscale.data.io import step_word
from downscale.errors import DataError, RecipeError
from downscale.train.plan import ScratchPlan

if TYPE_CHECKING:
    import torch

    from downscale.bundle import Bundle
    from downscale.data.dataset import SampleDataset
    from downscale.data.normalise import Normaliser
    from downscale.data.pairing import PairedData
    from downscale.data.shots import ShotSelection
    from downscale.models.losses import Criterion
    from downscale.recipe import Recipe
    from downscale.train.checkpoint import CheckpointStore
    from downscale.train.engine import FitResult, Trainer
    from downscale.train.sources import MixedDataset

__all__ = ["PreparedData", "TrainResult", "build_model", "fit_model", "make_bundle", "prepare_data", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    bundle_path: Path
    bundle_id: str
    scores: list[dict[str, Any]]  # tidy skill rows on the test period (downscale.skill.table)
    test_days: int
    seconds: float
    notes: list[str] = field(default_factory=list)  # why a baseline has no rows in the skill table
    step_unit: str = "days"  # what test_days counts: days, or hourly steps etc. (data.io.step_word)


@dataclass
class PreparedData:
    """The paired data of a run, split into days, normalised and materialised as samples."""

    paired: PairedData
    normaliser: Normaliser
    pool: np.ndarray  # the days of the training period (minus validation)
    train_idx: np.ndarray  # the days trained on (the k-shot days in a few-shot run)
    val_idx: np.ndarray
    test_idx: np.ndarray
    shots: ShotSelection | None
    train_set: SampleDataset | MixedDataset  # several sources: the mixed set
    val_set: SampleDataset | None
    primary_set: SampleDataset  # the recipe's own training samples
    sources: list[dict[str, Any]] | None

    @property
    def zero_shot(self) -> bool:
        return len(self.train_idx) == 0

    @property
    def fit_idx(self) -> np.ndarray:
        """The days the statistics are fitted on (zero-shot: the new predictors' period)."""
        return self.train_idx if len(self.train_idx) else self.pool

    def seen(self, recipe: Recipe) -> np.ndarray:
        """The days the emulator saw: the training period (validation included), or the k-shot set."""
        if self.shots is not None:
            return np.sort(np.concatenate([self.train_idx, self.val_idx]))
        return self.paired.indices(recipe.data.periods.train)


def prepare_data(recipe: Recipe, plan: ScratchPlan) -> PreparedData:
    """Step 1: pair, split, fit the normaliser (training days only) and materialise the samples."""
    from downscale.data.dataset import SampleDataset, materialise
    from downscale.data.normalise import Normaliser
    from downscale.data.pairing import build_pairs

    t0 = time.perf_counter()
    logger.info("pairing the data of recipe %s (%s)", recipe.name, recipe.framework)
    paired = build_pairs(recipe)
    periods = recipe.data.periods
    train_idx = paired.indices(periods.train, exclude=periods.validation)
    val_idx = paired.indices(periods.validation) if periods.validation else np.array([], int)
    # checked now, so that a bad test period fails before training, not after
    test_idx = paired.indices(periods.test) if periods.test is not None else np.array([], int)
    if len(train_idx) == 0:
        raise DataError(f"no training days in {periods.train.describe()}", fix="check data.periods.train and the files")
    pool, shots = train_idx, None
    if recipe.data.shots is not None:  # few-shot: train and validation days drawn from the training period
        from downscale.data.shots import select_shots

        if periods.validation is not None:
            raise RecipeError(
                "data.periods.validation cannot be combined with data.shots",
                fix="remove data.periods.validation: the validation days come out of the k-shot set (data.shots.validation)",
            )
        shots = select_shots(paired.time, pool, recipe.data.shots, season=periods.train.season)
        train_idx, val_idx = shots.train, shots.validation
        if len(train_idx) == 0 and not plan.allows_zero_shot:
            raise RecipeError(
                "data.shots selects no training day", fix="zero-shot (days: 0) needs 'downscale transfer'"
            )
    # climatology statics come from training days only: a zero-shot run has none, so it has none of them
    zero_shot = len(train_idx) == 0
    paired = paired.with_climatology([] if zero_shot else recipe.data.static_climatology, train_idx)
    plan.check_variables(paired)
    fit_idx = train_idx if len(train_idx) else pool

    normaliser = Normaliser.fit(paired.x.isel(time=fit_idx), paired.y.isel(time=fit_idx), paired.static)
    normaliser = plan.normaliser(normaliser, zero_shot=zero_shot)
    cache = recipe.resolve(recipe.data.cache) if recipe.data.cache else None
    train_set = SampleDataset(materialise(paired, normaliser, train_idx, cache=cache, name="train"))
    val_set = (
        SampleDataset(materialise(paired, normaliser, val_idx, cache=cache, name="validation"))
        if len(val_idx)
        else None
    )
    primary_set: SampleDataset = train_set
    mixed: SampleDataset | MixedDataset = train_set
    sources = None
    if recipe.transfer is not None and recipe.transfer.sources and len(train_set):
        from downscale.train.sources import mix_sources

        mixed, sources = mix_sources(recipe, paired, train_set, seed=recipe.train.seed)
    logger.info(
        "data ready in %.1f s: %d training, %d validation, %d test %s on a %s coarse and a %s fine grid",
        time.perf_counter() - t0,
        len(train_idx),
        len(val_idx),
        len(test_idx),
        step_word(paired.frequency),
        "x".join(map(str, paired.coarse_grid.shape)),
        "x".join(map(str, paired.fine_grid.shape)),
    )
    return PreparedData(
        paired, normaliser, pool, train_idx, val_idx, test_idx, shots, mixed, val_set, primary_set, sources
    )


def build_model(recipe: Recipe, data: PreparedData) -> tuple[Criterion, torch.nn.Module]:
    """Step 2: the heads of the targets (the criterion) and the backbone of the registry."""
    from downscale.models import create_model
    from downscale.models.losses import create_criterion

    paired = data.paired
    loss = create_criterion(
        recipe.loss.type,
        paired.targets,
        recipe.loss.variables,
        params=recipe.loss.params,
        members=recipe.loss.members,
        normaliser=data.normaliser,
    )
    model = create_model(
        recipe.model.type,
        in_channels=len(paired.predictors),
        out_channels=loss.out_channels,
        n_forcings=len(paired.forcing_names),
        n_static=len(paired.static_names),
        **recipe.model.kwargs(),
    )
    logger.info(
        "model %s: %d parameters, %d input channels, %d outputs",
        recipe.model.type,
        sum(p.numel() for p in model.parameters()),
        len(paired.predictors),
        loss.out_channels,
    )
    return loss, model


def fit_model(
    recipe: Recipe,
    data: PreparedData,
    loss: Criterion,
    model: torch.nn.Module,
    plan: ScratchPlan,
    out_dir: Path,
    *,
    progress: bool = True,
    console: Any = None,
) -> tuple[FitResult, Trainer, CheckpointStore, Any]:
    """Step 3: the engine (resumes from ``<out_dir>.ckpt/`` when a run of this recipe was interrupted; DDP under
    torchrun).  Returns the fit, the trainer, its checkpoint store and the experiment tracker."""
    from downscale.tracking import Tracker
    from downscale.train import distributed as dist
    from downscale.train.checkpoint import CheckpointStore, checkpoint_folder, recipe_fingerprint
    from downscale.train.engine import FitResult, Trainer
    from downscale.train.loader import make_step_loader

    cfg = recipe.train
    tracker = Tracker(
        cfg.mlflow, experiment=recipe.name, run_name=out_dir.name, params=recipe.to_dict(), enabled=dist.is_main()
    )
    param_groups = plan.prepare(
        model, data.paired, loss, model_type=recipe.model.type, model_kwargs=recipe.model.kwargs()
    )
    store = CheckpointStore(
        checkpoint_folder(out_dir),
        fingerprint=recipe_fingerprint(recipe) + plan.fingerprint,
        every=cfg.checkpoint_every,
    )
    trainer = Trainer(
        model,
        loss,
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        warmup=cfg.warmup,
        patience=cfg.patience,
        grad_clip=cfg.grad_clip,
        amp=cfg.amp,
        device=cfg.device,
        checkpoint=store,
        tracker=tracker,
        progress=progress,
        console=console,
        param_groups=param_groups,
    )
    plan.restore_optimizer(trainer)  # loading: resume takes the parent's optimiser state when its bundle has it
    if len(data.train_set):
        loader: dict[str, Any] = {"seed": cfg.seed, "num_workers": cfg.num_workers, "accumulate": cfg.accumulate}
        fit = trainer.fit(
            make_step_loader(data.train_set, cfg.batch_size, shuffle=True, **loader),
            make_step_loader(data.val_set, cfg.batch_size, shuffle=False, **loader) if data.val_set else None,
        )
    else:  # zero-shot transfer: the pretrained (adapted) weights as they are
        logger.info("zero-shot: no training day, the starting weights are bundled as they are")
        fit = FitResult({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, 0, None)
    # e.g. low-rank adapters merged into the weights: the bundle holds the plain model
    fit.best_state = plan.finalise(model, fit.best_state)
    return fit, trainer, store, tracker


def _provenance(recipe: Recipe, data: PreparedData) -> dict[str, Any]:
    import torch

    from downscale import __version__

    periods, shots, paired = recipe.data.periods, data.shots, data.paired
    train_text = periods.train.describe()
    if periods.validation:
        train_text += f" minus {periods.validation.describe()}"
    if shots is not None:
        train_text += f", {shots.record['size']} of it (k-shot, seed {shots.record['seed']})"
    return {
        "files": paired.files,
        "periods": {
            "train": train_text,
            **({"validation": periods.validation.describe()} if periods.validation else {}),
            **({"test": periods.test.describe()} if periods.test else {}),
        },
        "samples": {"train": len(data.train_idx), "validation": len(data.val_idx)},
        **({"shots": shots.record} if shots is not None else {}),
        **({"sources": data.sources} if data.sources else {}),
        "conversions": paired.conversions,
        "steps": paired.steps,
        "calendar": paired.calendar,
        "code_version": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def make_bundle(
    recipe: Recipe,
    data: PreparedData,
    loss: Criterion,
    model: torch.nn.Module,
    fit: FitResult,
    plan: ScratchPlan,
    trainer: Trainer,
) -> Bundle:
    """Step 4: the bundle in memory -- typed metadata, the best weights, static fields, validity mask, and the
    wet-day thresholds fitted on the days the emulator saw."""
    from downscale.bundle import Bundle, BundleMeta
    from downscale.bundle.meta import GridsMeta, ModelMeta, PostprocessMeta, TrainingMeta, VariableMeta, WetDayMeta
    from downscale.emulator import Emulator
    from downscale.skill.baselines import baseline_predictors

    paired, cfg, shots = data.paired, recipe.train, data.shots
    if len(data.primary_set):
        valid_mask = np.asarray(data.primary_set.arrays.m[:].max(axis=0) > 0)
    else:  # zero-shot: where the new targets have values in the training period
        valid_mask = np.asarray(np.isfinite(paired.y.isel(time=data.fit_idx).values).any(axis=0))
    lineage = None
    if plan.lineage is not None:
        lineage = {**plan.lineage, "shots": shots.record if shots is not None else None}
    meta = BundleMeta(
        name=recipe.name,
        framework=recipe.framework,
        predictors=[VariableMeta.of(n) for n in paired.predictors],
        targets=[VariableMeta.of(n) for n in paired.targets],
        static=[VariableMeta.of(n) for n in paired.static_names],
        forcings=paired.forcings,
        forcing_names=paired.forcing_names,
        forcing_longitude=paired.forcing_longitude,
        scenario=recipe.data.scenario,
        grids=GridsMeta(coarse=paired.coarse_grid.to_dict(), fine=paired.fine_grid.to_dict()),
        normaliser=data.normaliser.to_dict(),
        model=ModelMeta(
            type=recipe.model.type,
            kwargs=recipe.model.kwargs(),
            n_forcings=len(paired.forcing_names),
            out_channels=loss.out_channels,
            parameters=int(sum(p.numel() for p in model.parameters())),
        ),
        heads=recipe.loss,
        loss=loss.describe(),
        regrid=recipe.data.regrid,
        upscale=recipe.data.upscale,
        frequency=paired.frequency,
        pairing=paired.pairing,
        baselines=baseline_predictors(paired.targets, paired.predictors, recipe.baselines),
        apply=recipe.apply,
        recipe=recipe.to_dict(),
        provenance=_provenance(recipe, data),
        lineage=lineage,
        training=TrainingMeta(
            best_epoch=fit.best_epoch,
            best_val_loss=fit.best_val_loss,
            epochs_run=len(fit.history),
            stopped_early=fit.stopped_early,
        ),
    )
    arrays: dict[str, np.ndarray] = {}
    if paired.static is not None:
        arrays["static"] = np.asarray(paired.static.values, np.float32)
    arrays["valid_mask"] = valid_mask
    bundle = Bundle(meta=meta, weights=fit.best_state, arrays=arrays)
    seen = data.seen(recipe)
    if cfg.wet_day_adaptation and len(seen):  # per-cell thresholds fitted on those days (never on zero-shot)
        from downscale.train.calibration import fit_bundle_thresholds

        logger.info("fitting the wet-day thresholds of %s on %d days", ", ".join(cfg.wet_day_adaptation), len(seen))
        thr, wet_meta = fit_bundle_thresholds(
            Emulator(bundle), paired, seen, cfg.wet_day_adaptation, cfg.wet_day_threshold
        )
        arrays["wet_day_threshold"] = thr
        meta.postprocess = PostprocessMeta(wet_day_adaptation=WetDayMeta(**wet_meta))
    if cfg.save_optimizer and len(data.train_set):  # the optimiser's state after the last epoch, for loading: resume
        bundle.optimizer = trainer.optimizer_state_by_name()
        meta.training.optimizer_state = {
            "optimizer": type(trainer.optimizer).__name__,
            "after_epoch": len(fit.history),
            "tensors": len(bundle.optimizer),
        }
    return bundle


def score_bundle(recipe: Recipe, data: PreparedData, bundle: Bundle) -> list[dict[str, Any]]:
    """Step 5: the skill rows of the emulator and the baselines on the test period (stored in the bundle)."""
    if not len(data.test_idx):
        return []
    from downscale.emulator import Emulator
    from downscale.skill.table import skill_rows

    t0 = time.perf_counter()
    # the baselines' bias correction sees the days the emulator saw (the k-shot set in few-shot runs)
    seen = data.seen(recipe)
    train_all = seen if len(seen) else data.pool
    notes: list[str] = []
    scores = skill_rows(Emulator(bundle), data.paired, train_all, data.test_idx, seed=recipe.train.seed, notes=notes)
    assert recipe.data.periods.test is not None
    period = recipe.data.periods.test.describe()
    bundle.meta.scores = {"test": {"period": period, "days": len(data.test_idx), "rows": scores}}
    if notes:
        bundle.meta.scores["test"]["notes"] = notes
    for note in notes:  # downscale train prints them under the table
        logger.info("%s", note)
    unit = step_word(data.paired.frequency)
    logger.info("scored on %d test %s (%s) in %.1f s", len(data.test_idx), unit, period, time.perf_counter() - t0)
    return scores


def train(
    recipe: Recipe | str | Path,
    out_dir: str | Path,
    *,
    progress: bool = True,
    console: Any = None,
    plan: ScratchPlan | None = None,
    overwrite: bool = False,
    verb: str = "train",
) -> TrainResult:
    """Train the emulator a recipe describes and write its bundle to ``out_dir``.

    ``plan`` (a :class:`downscale.transfer.TransferPlan`, given by ``downscale transfer``) starts the
    model from a pretrained bundle: it picks the normaliser, loads and modifies the model and
    writes the lineage; without one the run starts from scratch.  ``data.shots`` (few-shot days) and
    ``transfer.sources`` (several pairs or domains in one run) work with and without a plan.

    ``out_dir`` follows the output contract of :mod:`downscale.outdir` (checked before anything is read): a
    new path, an empty folder, or a folder of ours -- an interrupted run of the same ``verb`` resumes from
    ``<out_dir>.ckpt/``, anything else of ours is replaced only with ``overwrite``."""
    from downscale.outdir import OutputFolder, check_companion
    from downscale.train import distributed as dist
    from downscale.train.checkpoint import checkpoint_folder

    out = Path(out_dir)
    main = dist.is_main()
    if main:  # the folders this run writes and deletes beside the bundle
        check_companion(checkpoint_folder(out), suffixes=(".pt",))
        check_companion(out.with_name(f".{out.name}.old"), bundle=True)
    with OutputFolder(out, verb, overwrite=overwrite, bundle=True, enabled=main) as output:
        return _train(recipe, out, output, progress=progress, console=console, plan=plan)


def _train(
    recipe: Recipe | str | Path,
    out_dir: Path,
    output: Any,
    *,
    progress: bool,
    console: Any,
    plan: ScratchPlan | None,
) -> TrainResult:
    import torch

    from downscale.bundle import save_bundle
    from downscale.models.factory import check_model_options
    from downscale.models.losses import create_criterion
    from downscale.recipe import Recipe, load_recipe
    from downscale.tracking import write_history
    from downscale.train import distributed as dist
    from downscale.train.engine import seed_everything

    t_start = time.perf_counter()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    plan = plan if plan is not None else ScratchPlan()
    out_dir = Path(out_dir)
    # fail before reading any data
    check_model_options(recipe.model.type, recipe.model.kwargs())
    dist.check_device(recipe.train.device)
    create_criterion(recipe.loss.type, list(recipe.data.targets), recipe.loss.variables, params=recipe.loss.params)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    seed_everything(recipe.train.seed)

    data = prepare_data(recipe, plan)
    loss, model = build_model(recipe, data)
    fit, trainer, store, tracker = fit_model(
        recipe, data, loss, model, plan, out_dir, progress=progress, console=console
    )
    main = dist.is_main()
    dist.teardown()
    if not main:  # rank 0 writes the bundle
        return TrainResult(out_dir, "", [], 0, time.perf_counter() - t_start)

    bundle = make_bundle(recipe, data, loss, model, fit, plan, trainer)
    scores = score_bundle(recipe, data, bundle)
    bundle_id = save_bundle(out_dir, bundle)
    write_history(out_dir, fit.history_rows())  # training_log.csv and .json
    output.finish(bundle_id=bundle_id)
    tracker.finish(out_dir)
    store.remove()
    seconds = time.perf_counter() - t_start
    logger.info("bundle %s written to %s (%.0f s in all)", bundle_id, out_dir, seconds)
    notes = list((bundle.meta.scores or {}).get("test", {}).get("notes", []))
    return TrainResult(out_dir, bundle_id, scores, len(data.test_idx), seconds, notes, step_word(data.paired.frequency))
