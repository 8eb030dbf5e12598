"""The training engine: one loop for every framework and every verb.

Seeded, with a learning-rate schedule, early stopping on the validation loss,
the best weights kept, and Rich progress showing the loss and throughput.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["EpochLog", "FitResult", "Trainer", "seed_everything", "select_device"]


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    lr: float
    seconds: float
    samples_per_s: float


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_loss: float | None
    history: list[EpochLog] = field(default_factory=list)
    stopped_early: bool = False

    def history_rows(self) -> list[dict[str, Any]]:
        return [asdict(h) for h in self.history]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Trainer:
    """Fits ``model`` with ``loss_fn(pred, y, m)`` on dict batches of x, f, s, y, m."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        epochs: int,
        lr: float,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        patience: int | None = None,
        device: torch.device | str = "cpu",
        progress: bool = True,
        console: Any = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.epochs, self.patience = epochs, patience
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.schedule = schedule
        self.progress, self.console = progress, console

    def _step_lr(self, step: int, total: int) -> None:
        if self.schedule == "cosine":
            base = self.optimizer.defaults["lr"]
            warm = max(1, total // 50)
            frac = step / warm if step < warm else 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, total - warm)))
            for group in self.optimizer.param_groups:
                group["lr"] = base * float(frac)

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, M, C, H, W]: M forward passes (ensemble members) when the loss needs them."""
        out_shape = tuple(batch["y"].shape[-2:])
        members = getattr(self.loss_fn, "members", 1)
        return torch.stack([self.model(batch["x"], batch["f"], batch["s"], out_shape) for _ in range(members)], dim=1)

    @torch.no_grad()
    def evaluate(self, loader) -> float:
        self.model.eval()
        total, n = 0.0, 0
        for batch in loader:
            batch = _to(batch, self.device)
            loss = self.loss_fn(self._forward(batch), batch["y"], batch["m"])
            total += float(loss) * len(batch["x"])
            n += len(batch["x"])
        return total / max(n, 1)

    def fit(self, train_loader, val_loader=None) -> FitResult:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        total_steps = self.epochs * len(train_loader)
        history: list[EpochLog] = []
        best_state, best_epoch, best_val = copy.deepcopy(self.model.state_dict()), 0, None
        bad_epochs, stopped, step = 0, False, 0
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]}  {task.fields[rate]:.0f} samples/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, disable=not self.progress, transient=False) as bar:
            task = bar.add_task("training", total=total_steps, loss=float("nan"), val="-", rate=0.0)
            for epoch in range(1, self.epochs + 1):
                sampler = getattr(train_loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                self.model.train()
                t0, seen, running = time.perf_counter(), 0, 0.0
                for batch in train_loader:
                    self._step_lr(step, total_steps)
                    batch = _to(batch, self.device)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = self.loss_fn(self._forward(batch), batch["y"], batch["m"])
                    loss.backward()
                    self.optimizer.step()
                    step += 1
                    seen += len(batch["x"])
                    running += float(loss.detach()) * len(batch["x"])
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=1, loss=running / seen, rate=rate)
                seconds = time.perf_counter() - t0
                val = self.evaluate(val_loader) if val_loader is not None and len(val_loader) else None
                history.append(
                    EpochLog(epoch, running / max(seen, 1), val, self.optimizer.param_groups[0]["lr"], seconds, seen / seconds)
                )
                score = val if val is not None else running / max(seen, 1)
                if best_val is None or score < best_val:
                    best_val, best_epoch, bad_epochs = score, epoch, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    bad_epochs += 1
                bar.update(task, val=f"{score:.4f}")
                if self.patience is not None and bad_epochs >= self.patience:
                    stopped = True
                    break
        self.model.load_state_dict(best_state)
        return FitResult(best_state, best_epoch, best_val, history, stopped)
