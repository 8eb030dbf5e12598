"""Losses and output heads, one per target variable, behind one ``Criterion``.

A *head* says how many model output channels a variable takes, how those channels
are scored against the target, and how a prediction is read from them:

- ``mse``, ``mae``: one channel, the value itself;
- further heads (asymmetric, Bernoulli-gamma, CRPS ensembles) register in ``HEADS``.

The model's raw output always reaches the criterion with a member axis,
``out`` [B, M, C, H, W]: M = 1 for deterministic training; heads that need an
ensemble (``needs_members``) get ``LossSection.members`` forward passes per sample.
Every loss honours the validity mask ``m`` (False = invalid cell, e.g. sea in E-OBS).
All tensors are in *normalised* target units (see ``downscale.data.normalise``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from downscale.registry import Registry

if TYPE_CHECKING:
    from downscale.data.normalise import Normaliser, Stats

__all__ = ["HEADS", "Criterion", "Head", "create_criterion", "masked_mean"]


def masked_mean(elem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``elem`` over cells where ``mask`` is True (broadcast over leading dims)."""
    m = mask.to(elem.dtype).expand_as(elem)
    return (elem * m).sum() / m.sum().clamp_min(1.0)


class Head:
    """One variable's output channels, loss and prediction.  Subclass and register in HEADS."""

    channels: int = 1
    needs_members: bool = False  # True: the loss scores an ensemble (M > 1 forward passes)

    def __init__(self, variable: str, stats: Stats | None = None, **params: Any) -> None:
        self.variable = variable
        self.stats = stats  # downscale.data.normalise.Stats of this target, or None
        if params:
            raise TypeError(f"head {type(self).__name__} takes no options, got {sorted(params)}")

    def loss(self, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``out`` [B, M, channels, H, W], ``y``/``m`` [B, H, W] → scalar."""
        raise NotImplementedError

    def predict(self, out: torch.Tensor, mode: str = "mean", generator: torch.Generator | None = None) -> torch.Tensor:
        """``out`` [B, M, channels, H, W] → [B, M, H, W] (normalised target units)."""
        return out[:, :, 0]


HEADS: Registry[type[Head]] = Registry("loss")


@HEADS.register("mse")
class MSEHead(Head):
    def loss(self, out, y, m):
        return masked_mean((out[:, :, 0] - y[:, None]) ** 2, m[:, None])


@HEADS.register("mae")
class MAEHead(Head):
    def loss(self, out, y, m):
        return masked_mean((out[:, :, 0] - y[:, None]).abs(), m[:, None])


@dataclass
class Criterion:
    """Per-variable heads over the model's output channels."""

    targets: list[str]
    heads: list[Head]
    members: int = 1

    @property
    def out_channels(self) -> int:
        return sum(h.channels for h in self.heads)

    @property
    def stochastic(self) -> bool:
        return any(h.needs_members for h in self.heads)

    def _split(self, out: torch.Tensor) -> list[torch.Tensor]:
        if out.ndim == 4:  # [B, C, H, W]: a single member
            out = out[:, None]
        return list(torch.split(out, [h.channels for h in self.heads], dim=2))

    def __call__(self, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Mean over variables of each head's masked loss."""
        parts = self._split(out)
        losses = [h.loss(o, y[:, v], m[:, v]) for v, (h, o) in enumerate(zip(self.heads, parts, strict=True))]
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total / len(self.heads)

    def per_variable(self, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> dict[str, float]:
        parts = self._split(out)
        return {
            t: float(h.loss(o, y[:, v], m[:, v]))
            for v, (t, h, o) in enumerate(zip(self.targets, self.heads, parts, strict=True))
        }

    def predict(self, out: torch.Tensor, mode: str = "mean", generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, M, C, H, W] → [B, M, V, H, W] in normalised target units."""
        parts = self._split(out)
        return torch.stack([h.predict(o, mode, generator) for h, o in zip(self.heads, parts, strict=True)], dim=2)

    def describe(self) -> dict[str, Any]:
        return {
            "heads": {t: type(h).__name__ for t, h in zip(self.targets, self.heads, strict=True)},
            "members": self.members,
        }


def _head_name(cls: type[Head]) -> str:
    return next(n for n in HEADS.names() if HEADS.get(n) is cls)


def create_criterion(
    default: str,
    targets: Sequence[str],
    per_variable: dict[str, str] | None = None,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    members: int = 2,
    normaliser: Normaliser | None = None,
) -> Criterion:
    """Heads for ``targets``: ``default`` for each unless ``per_variable`` names another.

    ``params[head_name]`` are passed to that head; ``normaliser`` gives each head its
    target's statistics (e.g. to place a wet-day threshold in normalised units).
    """
    per_variable, params = per_variable or {}, params or {}
    heads = []
    for t in targets:
        name = per_variable.get(t, default)
        cls = HEADS.get(name)
        stats = normaliser.targets.get(t) if normaliser is not None else None
        heads.append(cls(t, stats, **params.get(name, {})))
    ensemble = any(h.needs_members for h in heads)
    return Criterion(list(targets), heads, members if ensemble else 1)
