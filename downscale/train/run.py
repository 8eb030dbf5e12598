"""``downscale train``: recipe → paired data → normaliser → model → engine → bundle."""

from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from downscale.errors import DataError, RecipeError

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    bundle_path: Path
    bundle_id: str
    scores: list[dict[str, Any]]  # tidy skill rows on the test period (downscale.skill.table)
    test_days: int
    seconds: float


def _loader(dataset, batch_size: int, *, shuffle: bool, seed: int, num_workers: int, accumulate: int = 1):
    """Optimiser steps of one global batch each (split over DDP ranks and ``accumulate`` micro-batches)."""
    import torch

    from downscale.data.dataset import BlockShuffleSampler
    from downscale.train.engine import StepLoader

    if hasattr(dataset, "make_sampler"):  # several sources: every batch from one of them
        sampler = dataset.make_sampler(batch_size, seed) if shuffle else None
    else:
        block = len(dataset) if dataset.arrays.in_memory else 256
        sampler = BlockShuffleSampler(len(dataset), block=max(block, 1), seed=seed) if shuffle else None
    return StepLoader(
        dataset,
        batch_size,
        sampler=sampler,
        accumulate=accumulate,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        seed=seed,
    )


def _variable_meta(names: list[str], da) -> list[dict[str, Any]]:
    from downscale.data.variables import get_spec, parse_level_name

    out = []
    for name in names:
        spec = get_spec(name)
        _, level = parse_level_name(name)
        out.append(
            {
                "name": name,
                "units": spec.units,
                "standard_name": spec.standard_name,
                "plev_hPa": level,
                "plausible": list(spec.plausible),
            }
        )
    return out


def train(
    recipe: Any,
    out_dir: str | Path,
    *,
    progress: bool = True,
    console: Any = None,
    plan: Any = None,
) -> TrainResult:
    """Train the emulator a recipe describes and write its bundle to ``out_dir``.

    ``plan`` (a :class:`downscale.transfer.TransferPlan`, given by ``downscale transfer``) starts the
    model from a pretrained bundle: it picks the normaliser, loads and modifies the model and
    writes the lineage.  ``data.shots`` (few-shot days) and ``transfer.sources`` (several pairs or
    domains in one run) work with and without a plan."""
    import time

    import torch

    from downscale import __version__
    from downscale.bundle import Bundle, save_bundle
    from downscale.data.dataset import SampleDataset, materialise
    from downscale.data.normalise import Normaliser
    from downscale.data.pairing import build_pairs
    from downscale.emulator import Emulator
    from downscale.models import create_model
    from downscale.models.factory import check_model_options
    from downscale.models.losses import create_criterion
    from downscale.recipe import Recipe, load_recipe
    from downscale.train import distributed as dist
    from downscale.train.checkpoint import (
        CheckpointStore,
        checkpoint_folder,
        recipe_fingerprint,
    )
    from downscale.train.engine import Trainer, seed_everything

    t_start = time.perf_counter()
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    out_dir = Path(out_dir)
    model_kwargs = recipe.model.kwargs()
    check_model_options(recipe.model.type, model_kwargs)  # fail before reading any data
    create_criterion(recipe.loss.type, list(recipe.data.targets), recipe.loss.variables, params=recipe.loss.params)
    cfg = recipe.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

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
        if len(train_idx) == 0 and plan is None:
            raise RecipeError(
                "data.shots selects no training day", fix="zero-shot (days: 0) needs 'downscale transfer'"
            )
    # climatology statics come from training days only: a zero-shot run has none, so it has none of them
    zero_shot = len(train_idx) == 0
    paired = paired.with_climatology([] if zero_shot else recipe.data.static_climatology, train_idx)
    if plan is not None:
        plan.check_variables(paired)
    fit_idx = train_idx if len(train_idx) else pool  # zero-shot: statistics of the new predictors from the period

    normaliser = Normaliser.fit(paired.x.isel(time=fit_idx), paired.y.isel(time=fit_idx), paired.static)
    if plan is not None:
        normaliser = plan.normaliser(normaliser, zero_shot=zero_shot)
    cache = recipe.resolve(recipe.data.cache) if recipe.data.cache else None
    train_set = SampleDataset(materialise(paired, normaliser, train_idx, cache=cache, name="train"))
    val_set = (
        SampleDataset(materialise(paired, normaliser, val_idx, cache=cache, name="validation"))
        if len(val_idx)
        else None
    )
    primary_set, sources = train_set, None
    if recipe.transfer is not None and recipe.transfer.sources and len(train_set):
        from downscale.train.sources import mix_sources

        train_set, sources = mix_sources(recipe, paired, train_set, seed=cfg.seed)

    loss = create_criterion(
        recipe.loss.type,
        paired.targets,
        recipe.loss.variables,
        params=recipe.loss.params,
        members=recipe.loss.members,
        normaliser=normaliser,
    )
    model = create_model(
        recipe.model.type,
        in_channels=len(paired.predictors),
        out_channels=loss.out_channels,
        n_forcings=len(paired.forcing_names),
        n_static=len(paired.static_names),
        **model_kwargs,
    )
    # resumes from <out_dir>.ckpt/ when a run of this recipe was interrupted; DDP under torchrun
    from downscale.tracking import Tracker, write_history

    tracker = Tracker(
        cfg.mlflow, experiment=recipe.name, run_name=out_dir.name, params=recipe.to_dict(), enabled=dist.is_main()
    )
    param_groups = None
    if plan is not None:
        param_groups = plan.prepare(model, paired, loss, model_type=recipe.model.type, model_kwargs=model_kwargs)
    fingerprint = recipe_fingerprint(recipe) + (plan.fingerprint if plan is not None else "")
    store = CheckpointStore(checkpoint_folder(out_dir), fingerprint=fingerprint, every=cfg.checkpoint_every)
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
    if plan is not None:  # loading: resume takes the parent's optimiser state when its bundle has it
        plan.restore_optimizer(trainer)
    loader = {"seed": cfg.seed, "num_workers": cfg.num_workers, "accumulate": cfg.accumulate}
    if len(train_set):
        fit = trainer.fit(
            _loader(train_set, cfg.batch_size, shuffle=True, **loader),
            _loader(val_set, cfg.batch_size, shuffle=False, **loader) if val_set else None,
        )
    else:  # zero-shot transfer: the pretrained (adapted) weights as they are
        from downscale.train.engine import FitResult

        fit = FitResult({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, 0, None)
    if plan is not None:  # e.g. low-rank adapters merged into the weights: the bundle holds the plain model
        fit.best_state = plan.finalise(model, fit.best_state)
    main = dist.is_main()
    dist.teardown()
    if not main:  # rank 0 writes the bundle
        return TrainResult(out_dir, "", [], 0, time.perf_counter() - t_start)

    if len(primary_set):
        valid_mask = np.asarray(primary_set.arrays.m[:].max(axis=0) > 0)
    else:  # zero-shot: where the new targets have values in the training period
        valid_mask = np.asarray(np.isfinite(paired.y.isel(time=fit_idx).values).any(axis=0))
    provenance = {
        "files": paired.files,
        "periods": {
            "train": periods.train.describe()
            + (f" minus {periods.validation.describe()}" if periods.validation else "")
            + (f", {shots.record['size']} of it (k-shot, seed {shots.record['seed']})" if shots is not None else ""),
            **({"validation": periods.validation.describe()} if periods.validation else {}),
            **({"test": periods.test.describe()} if periods.test else {}),
        },
        "samples": {"train": len(train_idx), "validation": len(val_idx)},
        **({"shots": shots.record} if shots is not None else {}),
        **({"sources": sources} if sources else {}),
        "conversions": paired.conversions,
        "steps": paired.steps,
        "calendar": paired.calendar,
        "code_version": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta = {
        "name": recipe.name,
        "framework": recipe.framework,
        "predictors": _variable_meta(paired.predictors, paired.x),
        "targets": _variable_meta(paired.targets, paired.y),
        "static": _variable_meta(paired.static_names, paired.static),
        "forcings": paired.forcings,
        "forcing_names": paired.forcing_names,
        "scenario": recipe.data.scenario,
        "grids": {"coarse": paired.coarse_grid.to_dict(), "fine": paired.fine_grid.to_dict()},
        "normaliser": normaliser.to_dict(),
        "model": {
            "type": recipe.model.type,
            "kwargs": model_kwargs,
            "n_forcings": len(paired.forcing_names),
            "out_channels": loss.out_channels,
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "loss": loss.describe(),
        "recipe": recipe.to_dict(),
        "provenance": provenance,
        **(
            {"lineage": {**plan.lineage, "shots": shots.record if shots is not None else None}}
            if plan is not None
            else {}
        ),
        "training": {
            "best_epoch": fit.best_epoch,
            "best_val_loss": fit.best_val_loss,
            "epochs_run": len(fit.history),
            "stopped_early": fit.stopped_early,
        },
    }
    arrays: dict[str, np.ndarray] = {}
    if paired.static is not None:
        arrays["static"] = np.asarray(paired.static.values, np.float32)
    if valid_mask is not None:
        arrays["valid_mask"] = valid_mask
    bundle = Bundle(meta=meta, weights=fit.best_state, arrays=arrays)
    # the days the emulator saw: the training period (validation included), or the k-shot set
    seen = np.sort(np.concatenate([train_idx, val_idx])) if shots is not None else paired.indices(periods.train)
    if cfg.wet_day_adaptation and len(seen):  # per-cell thresholds fitted on those days (never on zero-shot)
        from downscale.train.calibration import fit_bundle_thresholds

        thr, wet_meta = fit_bundle_thresholds(
            Emulator(bundle), paired, seen, cfg.wet_day_adaptation, cfg.wet_day_threshold
        )
        arrays["wet_day_threshold"] = thr
        meta["postprocess"] = {"wet_day_adaptation": wet_meta}
        bundle = Bundle(meta=meta, weights=fit.best_state, arrays=arrays)

    if cfg.save_optimizer and len(train_set):  # the optimiser's state after the last epoch, for loading: resume
        bundle.optimizer = trainer.optimizer_state_by_name()
        meta["training"]["optimizer_state"] = {
            "optimizer": type(trainer.optimizer).__name__,
            "after_epoch": len(fit.history),
            "tensors": len(bundle.optimizer),
        }

    scores: list[dict[str, Any]] = []
    if len(test_idx):
        from downscale.skill.table import skill_rows

        # the baselines' bias correction sees the days the emulator saw (the k-shot set in few-shot runs)
        train_all = seen if len(seen) else pool
        scores = skill_rows(Emulator(bundle), paired, train_all, test_idx, seed=cfg.seed)
        meta["scores"] = {"test": {"period": periods.test.describe(), "days": len(test_idx), "rows": scores}}
    bundle_id = save_bundle(out_dir, bundle)
    write_history(out_dir, fit.history_rows())  # training_log.csv and .json
    tracker.finish(out_dir)
    store.remove()
    return TrainResult(out_dir, bundle_id, scores, len(test_idx), time.perf_counter() - t_start)
