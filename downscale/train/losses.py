"""Losses.  Every loss honours the validity mask ``m`` (sea cells in E-OBS...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from downscale.registry import Registry

__all__ = ["LOSSES", "MaskedLoss", "create_loss"]

ElementLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[ElementLoss] = Registry("loss")


@LOSSES.register("mse")
def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target) ** 2


@LOSSES.register("mae")
def _mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs()


class MaskedLoss:
    """Mean over valid cells of a per-variable element loss, averaged over variables."""

    def __init__(self, per_variable: Sequence[ElementLoss]) -> None:
        self.per_variable = list(per_variable)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for v, fn in enumerate(self.per_variable):
            m = mask[:, v].to(pred.dtype)
            elem = fn(pred[:, v], target[:, v]) * m
            total = total + elem.sum() / m.sum().clamp_min(1.0)
        return total / len(self.per_variable)


def create_loss(default: str, targets: Sequence[str], per_variable: dict[str, str] | None = None) -> MaskedLoss:
    """The loss for ``targets``: ``default`` for each, unless ``per_variable`` names another."""
    per_variable = per_variable or {}
    return MaskedLoss([LOSSES.get(per_variable.get(t, default)) for t in targets])
