"""The training engine: one loop for every framework and every verb.

Seeded and deterministic, with a learning-rate schedule (constant, cosine or
one-cycle after a linear warm-up), gradient accumulation, gradient clipping,
mixed precision (bf16 autocast; fp16 with a GradScaler on CUDA), early stopping
on the validation loss with the best weights kept, exact resume from
checkpoints, data-parallel training (DDP under ``torchrun``) and Rich progress
showing the loss and throughput.

**Batches.**  A :class:`~downscale.train.loader.StepLoader` turns a dataset and an order (e.g. a
:class:`~downscale.data.dataset.BlockShuffleSampler`) into optimiser steps.
Each step consumes one *global* batch of ``batch_size`` samples, in the same
order whatever the number of processes; rank ``r`` of ``W`` takes the ``r``-th
contiguous share of it, split into ``accumulate`` micro-batches.

**Exact loss over shards.**  The loss of a global batch is what one process
would compute on the whole batch: for each target variable ``v`` a masked mean
``sum_v / N_v`` over the valid cells, averaged over the variables.  A micro-batch
holding ``n_v`` of the ``N_v`` valid cells of the global batch contributes its
own masked mean weighted by ``n_v / N_v`` (``N_v`` is summed over the
micro-batches and all-reduced over the ranks before the forward passes), and
each rank's loss is multiplied by ``W`` because DDP averages the gradients
over ranks.  The gradients of N ranks × M micro-batches are therefore those of
one process on the whole global batch, up to float rounding.  This holds for
every head whose loss is a masked mean over the samples' valid cells (all
heads of :mod:`downscale.models.losses`); a plain ``loss_fn(out, y, m)`` callable
is weighted by its total count of valid cells.

**Validation** sums each variable's masked loss and valid-cell count over all
batches and ranks, so the validation loss is the masked mean over the whole
validation set, identical on every rank (and so is the early-stopping decision).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch

from downscale.errors import RecipeError
from downscale.train import distributed as dist
from downscale.train.loader import Step, as_step_loader

logger = logging.getLogger(__name__)

__all__ = [
    "EpochLog",
    "FitResult",
    "TrainState",
    "Trainer",
    "lr_factor",
    "seed_everything",
    "select_device",
]


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    lr: float
    seconds: float
    samples_per_s: float
    val_per_variable: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_loss: float | None
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False
    step_losses: list[float] = field(default_factory=list)  # global-batch loss of every optimiser step
    resumed_from: int = 0  # the global step a checkpoint resumed at (0: a fresh run)

    def history_rows(self) -> list[dict[str, Any]]:
        return [asdict(h) for h in self.history]


def _fresh_accumulator() -> dict[str, Any]:
    return {"loss_sum": 0.0, "seen": 0, "seconds": 0.0}


@dataclass
class TrainState:
    """Where a run is and all it has learnt so far: saved whole in every checkpoint, restored whole on resume.

    ``epoch`` is the epoch the run continues with and ``step_in_epoch`` the steps already done in it;
    ``accum`` sums the loss, samples and seconds of that epoch so far."""

    best_state: dict[str, torch.Tensor]
    epoch: int = 1
    step_in_epoch: int = 0
    global_step: int = 0
    accum: dict[str, Any] = field(default_factory=_fresh_accumulator)
    best_val: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochLog] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    stopped: bool = False
    tracker_run_id: str | None = None

    def next_epoch(self) -> None:
        self.epoch, self.step_in_epoch, self.accum = self.epoch + 1, 0, _fresh_accumulator()

    def to_checkpoint(self, total_steps: int, samples: int) -> dict[str, Any]:
        """The checkpoint's record of the state (its keys are the checkpoint format)."""
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "total_steps": total_steps,
            "accum": dict(self.accum),
            "best": {
                "state": self.best_state,
                "score": self.best_val,
                "epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
            },
            "history": [asdict(h) for h in self.history],
            "step_losses": list(self.step_losses),
            "stopped": self.stopped,
            "tracker_run_id": self.tracker_run_id,
            "samples": samples,
        }

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        best = saved["best"]
        return cls(
            best_state=best["state"],
            epoch=saved["epoch"],
            step_in_epoch=saved["step_in_epoch"],
            global_step=saved["global_step"],
            accum=dict(saved["accum"]),
            best_val=best["score"],
            best_epoch=best["epoch"],
            bad_epochs=best["bad_epochs"],
            history=[EpochLog(**h) for h in saved["history"]],
            step_losses=list(saved["step_losses"]),
            stopped=saved["stopped"],
            tracker_run_id=saved.get("tracker_run_id"),
        )


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    # cuBLAS needs this before its first call to be deterministic
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def select_device(name: str) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU (see :mod:`.distributed`)."""
    return dist.select_device(name)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.02) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based) of ``total``.

    Every schedule starts with a linear warm-up over the fraction ``warmup`` of the
    steps; then ``constant`` stays at 1, ``cosine`` decays to 0 along half a cosine,
    and ``onecycle`` (warm-up from 1/25, like ``torch.optim.lr_scheduler.OneCycleLR``)
    anneals along a cosine to 1/(25·10⁴) at the last step.  For a classic one-cycle
    policy set ``warmup: 0.3``.
    """
    total = max(int(total), 1)
    warm = max(1, round(warmup * total)) if warmup > 0 else 0
    if schedule == "onecycle":
        start, final = 1 / 25, 1 / (25 * 1e4)
        if step < warm:
            return start + (1 - start) * step / warm
        t = min(1.0, (step - warm) / max(1, total - 1 - warm))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    raise RecipeError(f"unknown learning-rate schedule '{schedule}'", expected="constant, cosine or onecycle")


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ---------------------------------------------------------------------------- trainer


def _autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise RecipeError(
                "train.amp: fp16 needs a CUDA GPU (its gradient scaler does not run on the CPU)",
                found=f"device {device}",
                fix="use amp: bf16 (bfloat16 autocast also works on CPUs) or amp: off",
            )
        return torch.float16
    raise RecipeError(f"unknown train.amp '{amp}'", expected="auto, bf16, fp16 or off")


@contextlib.contextmanager
def _deterministic():
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the duration, then restored."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class Trainer:
    """Fits ``model`` with ``loss_fn(pred, y, m)`` on dict batches of x, f, s, y, m.

    ``loss_fn`` is a :class:`~downscale.models.losses.Criterion` (its ``members``
    forward passes per sample, its per-variable heads) or any callable returning
    a masked-mean loss.  ``checkpoint`` (a :class:`~.checkpoint.CheckpointStore`)
    makes the run resumable: :meth:`fit` continues from the checkpoint there, if
    any.  ``tracker`` (a :class:`~.tracking.Tracker`) receives each epoch's metrics.
    Under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` and
    only rank 0 writes checkpoints, tracks and shows progress.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        epochs: int,
        lr: float,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        warmup: float = 0.02,
        patience: int | None = None,
        grad_clip: float | None = None,
        amp: str = "auto",
        device: torch.device | str = "auto",
        checkpoint: Any = None,
        tracker: Any = None,
        progress: bool = True,
        console: Any = None,
        param_groups: list[dict[str, Any]] | None = None,
    ) -> None:
        self.ctx = dist.setup(str(device))
        self.device = self.ctx.device
        self.model = model.to(self.device)
        self.net: torch.nn.Module = self.model
        if dist.is_distributed():
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn = loss_fn
        self.epochs, self.patience, self.grad_clip = epochs, patience, grad_clip
        self.base_lr = lr
        # param_groups: [{"params": [...], "lr_scale": 0.1}, ...] for per-module learning rates (transfer)
        params = param_groups if param_groups is not None else self.model.parameters()
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        # "anchor_decay": decay towards the weights the model starts with (L2-SP, transfer).  The anchors are
        # kept out of the optimiser's state: a resumed run rebuilds them from the same starting weights.
        self._anchors = {
            i: [p.detach().clone() for p in group["params"]]
            for i, group in enumerate(self.optimizer.param_groups)
            if group.get("anchor_decay")
        }
        lr_factor(schedule, 0, 1)  # unknown names fail here, not after the first epoch
        self.schedule, self.warmup = schedule, warmup
        self.amp_dtype = _autocast_dtype(amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.checkpoint, self.tracker = checkpoint, tracker
        self.main = dist.is_main()
        self.progress, self.console = progress and self.main, console

    # ------------------------------------------------------------------ pieces

    @property
    def variables(self) -> list[str]:
        return list(getattr(self.loss_fn, "targets", []) or []) if self._per_head else []

    @property
    def _per_head(self) -> bool:
        return hasattr(self.loss_fn, "heads") and hasattr(self.loss_fn, "_split")

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward(self, batch: dict[str, torch.Tensor], net: torch.nn.Module | None = None) -> torch.Tensor:
        """[B, M, C, H, W]: M forward passes per sample (ensemble members) when the loss needs them.

        The M passes run as one call on the batch repeated M times (member-major), so
        that a DDP model sees one forward per backward; a stochastic model draws its
        noise per sample, hence independently for each member.
        """
        net = self.net if net is None else net
        out_shape = tuple(batch["y"].shape[-2:])
        members = int(getattr(self.loss_fn, "members", 1))
        x, f, s = batch["x"], batch["f"], batch["s"]
        if members > 1:
            x, f, s = (t.repeat(members, *([1] * (t.ndim - 1))) for t in (x, f, s))
        with self._autocast():
            out = net(x, f, s, out_shape)
        out = out.unflatten(0, (members, -1)).transpose(0, 1)
        return out if out.dtype in (torch.float32, torch.float64) else out.float()

    def _counts(self, m: torch.Tensor) -> torch.Tensor:
        """Valid cells per variable (float64, CPU): the weights of the masked means."""
        if self._per_head:
            return m.sum(dim=tuple(d for d in range(m.ndim) if d != 1), dtype=torch.float64).cpu()
        return m.sum(dtype=torch.float64).reshape(1).cpu()

    def _parts(self, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        """Each variable's masked-mean loss (one item for a plain loss callable)."""
        crit: Any = self.loss_fn  # a Criterion, or any callable with the same per-head interface
        if self._per_head:
            outs = crit._split(out)
            return [h.loss(o, y[:, v], m[:, v]) for v, (h, o) in enumerate(zip(crit.heads, outs, strict=True))]
        return [crit(out, y, m)]

    def _set_lr(self, global_step: int, total: int) -> float:
        lr = self.base_lr * lr_factor(self.schedule, global_step, total, self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _train_step(self, step: Step) -> float:
        """One optimiser step; returns the loss of the whole global batch (the same on every rank)."""
        counts = [torch.zeros_like(self._counts(b["m"])) if dummy else self._counts(b["m"]) for b, dummy in step.micro]
        micro = [(_to(b, self.device), dummy) for b, dummy in step.micro]
        total = dist.all_reduce_sum(torch.stack(counts).sum(0)).clamp_min(1.0)
        scale = float(self.ctx.world_size)  # DDP averages gradients over ranks; we want their sum
        self.optimizer.zero_grad(set_to_none=True)
        contribution = torch.zeros((), dtype=torch.float64, device=self.device)
        for i, (batch, _) in enumerate(micro):
            weights = (counts[i] / total).tolist()
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or self.net is self.model else cast(Any, self.net).no_sync()
            with sync:
                parts = self._parts(self._forward(batch), batch["y"], batch["m"])
                loss = sum(w * p for w, p in zip(weights, parts, strict=True)) / len(parts)
                contribution += loss.detach().double()
                loss = loss * scale
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        stepped = True
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale  # the scale drops when the step was skipped (inf/NaN)
        else:
            self.optimizer.step()
        if stepped:
            self._pull_to_anchors()
        return float(dist.all_reduce_sum(contribution))

    def optimizer_state_by_name(self) -> dict[str, torch.Tensor]:
        """The optimiser's per-parameter state (AdamW: ``step``, ``exp_avg``, ``exp_avg_sq``) keyed
        ``"<state>/<parameter name>"``: plain tensors that a bundle can store and another model (the same
        names and shapes) can take back with :meth:`load_optimizer_state_by_name`."""
        out: dict[str, torch.Tensor] = {}
        for name, p in self.model.named_parameters():
            for key, value in self.optimizer.state.get(p, {}).items():
                if torch.is_tensor(value):
                    out[f"{key}/{name}"] = value.detach().cpu().clone()
        return out

    def load_optimizer_state_by_name(self, state: dict[str, torch.Tensor]) -> list[str]:
        """Put back the state of every trained parameter whose name and shape ``state`` has (see
        :meth:`optimizer_state_by_name`); returns the names restored.  The others start fresh."""
        by_name: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            kind, _, name = key.partition("/")
            by_name.setdefault(name, {})[kind] = value
        trained = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        restored = []
        for name, p in self.model.named_parameters():
            saved = by_name.get(name)
            if id(p) not in trained or not saved or any(v.shape != p.shape for k, v in saved.items() if k != "step"):
                continue
            self.optimizer.state[p] = {
                # AdamW keeps its step count on the CPU unless capturable/fused
                k: v.to(dtype=torch.float32) if k == "step" else v.to(self.device, dtype=p.dtype)
                for k, v in saved.items()
            }
            restored.append(name)
        return restored

    @torch.no_grad()
    def _pull_to_anchors(self) -> None:
        """Decoupled L2-SP: ``w <- w + lr * anchor_decay * (w0 - w)`` for the groups that have anchors.

        AdamW's weight decay pulls every weight towards zero; after a transfer that means away from what
        the parent learned.  This pulls towards the starting (parent's) weights at the same point of the
        step, so the strength is in the same units as AdamW's ``weight_decay``.
        """
        for i, anchors in self._anchors.items():
            group = self.optimizer.param_groups[i]
            step = min(1.0, group["lr"] * group["anchor_decay"])
            for p, p0 in zip(group["params"], anchors, strict=True):
                p.lerp_(p0, step)

    @torch.no_grad()
    def evaluate_detail(self, loader: Any) -> tuple[float, dict[str, float]]:
        """Validation loss (masked mean over the whole set, all ranks) and the same per variable."""
        loader = as_step_loader(loader)
        self.model.eval()
        sums: torch.Tensor | None = None
        counts: torch.Tensor | None = None
        for step in loader.steps():
            for batch, dummy in step.micro:
                if dummy:
                    continue
                n = self._counts(batch["m"])
                batch = _to(batch, self.device)
                losses = self._parts(self._forward(batch, self.model), batch["y"], batch["m"])
                parts = torch.stack([p.detach().double().cpu() for p in losses])
                sums = parts * n if sums is None else sums + parts * n
                counts = n if counts is None else counts + n
        if sums is None:  # this rank had nothing; still join the all-reduce
            n_vars = max(len(getattr(self.loss_fn, "heads", [])), 1) if self._per_head else 1
            sums, counts = torch.zeros(n_vars, dtype=torch.float64), torch.zeros(n_vars, dtype=torch.float64)
        assert counts is not None  # set together with sums
        both = dist.all_reduce_sum(torch.stack([sums, counts]))
        per_var = (both[0] / both[1].clamp_min(1.0)).tolist()
        names = self.variables
        return float(np.mean(per_var)), (dict(zip(names, per_var, strict=True)) if names else {})

    def evaluate(self, loader: Any) -> float:
        return self.evaluate_detail(loader)[0]

    # ------------------------------------------------------------------ state

    def _state(self, **position: Any) -> dict[str, Any]:
        from downscale.train.checkpoint import capture_rng

        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": capture_rng(),
            "world_size": self.ctx.world_size,
            **position,
        }

    def _load(self) -> dict[str, Any] | None:
        """The checkpoint to resume from (read by rank 0, shared with the others), or None."""
        if self.checkpoint is None:
            return None
        state, error = None, None
        if self.main:
            try:
                state = self.checkpoint.load()
            except Exception as exc:
                error = exc
        if dist.is_distributed():
            shared = dist.broadcast_object((state, str(error) if error else None))
            state, message = cast("tuple[dict[str, Any] | None, str | None]", shared)
            if message and error is None:
                from downscale.train.checkpoint import CheckpointError

                raise CheckpointError(message)
        if error is not None:
            raise error
        return state

    # ------------------------------------------------------------------ fit

    def fit(self, train_loader: Any, val_loader: Any = None) -> FitResult:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from downscale.train.checkpoint import CheckpointError, restore_rng

        train_loader, val_loader = as_step_loader(train_loader), as_step_loader(val_loader)
        if val_loader is not None and len(val_loader.dataset) == 0:
            val_loader = None
        per_epoch = len(train_loader)
        total_steps = self.epochs * per_epoch
        samples = len(train_loader.dataset)
        every = getattr(self.checkpoint, "every", None)

        state = TrainState(best_state=_cpu_state(self.model))
        saved = self._load()
        if saved is not None and saved.get("samples") != samples:
            raise CheckpointError(
                "the training checkpoint was written for other training data",
                file=getattr(self.checkpoint, "path", None),
                found=f"{samples} training samples",
                expected=str(saved.get("samples")),
                fix=f"delete {getattr(self.checkpoint, 'folder', 'the checkpoint folder')} to start the training afresh",
            )
        if saved is not None:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            if self.scaler is not None and saved.get("scaler"):
                self.scaler.load_state_dict(saved["scaler"])
            state = TrainState.from_checkpoint(saved)
            restore_rng(saved["rng"])
            logger.info("resuming at epoch %d, step %d of %d", state.epoch, state.global_step, total_steps)
        resumed_from = state.global_step
        if self.tracker is not None and self.main:
            self.tracker.start(state.tracker_run_id)
        state.tracker_run_id = getattr(self.tracker, "run_id", None)
        if self.main:
            logger.info(
                "training %d epochs of %d steps (%d samples, batch %d) on %s",
                self.epochs,
                per_epoch,
                samples,
                train_loader.batch_size,
                self.device,
            )

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}  {task.fields[rate]:.0f} samples/s"),
            TimeRemainingColumn(),
        )
        fit_start = time.perf_counter()
        with (
            _deterministic(),
            Progress(*columns, console=self.console, disable=not self.progress, transient=False) as bar,
        ):
            task = bar.add_task(
                "training", total=total_steps, completed=state.global_step, loss=float("nan"), val="-", rate=0.0
            )
            while not state.stopped and state.epoch <= self.epochs:
                epoch, accum = state.epoch, state.accum
                train_loader.set_epoch(epoch)
                self.model.train()
                t0 = time.perf_counter() - accum["seconds"]
                for step in train_loader.steps(state.step_in_epoch):
                    self._set_lr(state.global_step, total_steps)
                    loss = self._train_step(step)
                    state.global_step += 1
                    state.step_losses.append(loss)
                    accum["loss_sum"] += loss * step.size
                    accum["seen"] += step.size
                    accum["seconds"] = time.perf_counter() - t0
                    rate = accum["seen"] / max(accum["seconds"], 1e-9)
                    bar.update(task, advance=1, loss=accum["loss_sum"] / accum["seen"], rate=rate)
                    if every and state.global_step % every == 0 and self.main:
                        state.step_in_epoch = step.index + 1
                        self.checkpoint.save(self._state(**state.to_checkpoint(total_steps, samples)))
                seconds = time.perf_counter() - t0
                train_loss = accum["loss_sum"] / max(accum["seen"], 1)
                val, val_vars = self.evaluate_detail(val_loader) if val_loader is not None else (None, {})
                lr = self.optimizer.param_groups[0]["lr"]
                log = EpochLog(epoch, train_loss, val, lr, seconds, accum["seen"] / max(seconds, 1e-9), val_vars)
                state.history.append(log)
                score = val if val is not None else train_loss
                improved = state.best_val is None or score < state.best_val
                if improved:
                    state.best_val, state.best_epoch, state.bad_epochs = score, epoch, 0
                    state.best_state = _cpu_state(self.model)
                    if self.checkpoint is not None and self.main:
                        self.checkpoint.save_best(state.best_state, epoch, score)
                else:
                    state.bad_epochs += 1
                bar.update(task, val=f"{score:.4f}")
                state.stopped = self.patience is not None and state.bad_epochs >= self.patience
                if self.tracker is not None and self.main:
                    self.tracker.log_epoch(asdict(log))
                if self.main:
                    done = state.global_step - resumed_from
                    eta = (time.perf_counter() - fit_start) / max(done, 1) * (total_steps - state.global_step)
                    logger.info(
                        "epoch %d/%d  loss %.4f  val %s  lr %.2e  %.1f samples/s  %.1f s%s  ETA %s",
                        epoch,
                        self.epochs,
                        train_loss,
                        f"{val:.4f}" if val is not None else "-",
                        lr,
                        log.samples_per_s,
                        seconds,
                        "  (best)" if improved else "",
                        _duration(0.0 if state.stopped else eta),
                    )
                state.next_epoch()
                if self.checkpoint is not None and self.main:
                    self.checkpoint.save(self._state(**state.to_checkpoint(total_steps, samples)))
        if state.stopped and self.main:
            logger.info("early stop after epoch %d: no improvement for %d epochs", state.epoch - 1, self.patience)
        self.model.load_state_dict(state.best_state)
        return FitResult(
            state.best_state,
            state.best_epoch,
            state.best_val,
            state.history,
            state.stopped,
            state.step_losses,
            resumed_from,
        )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )
