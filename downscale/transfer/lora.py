"""Low-rank adapters (LoRA) for convolutions and linear layers, merged back into plain weights at the end.

``transfer.lora: {rank: 4, alpha: 4, modules: ["coarse.*", "fine.*"]}`` wraps every ``Conv2d`` and
``Linear`` inside the matched modules: the pretrained weight is frozen and a low-rank update is learnt,
``W + (alpha / rank) · B A`` with ``A`` a ``rank``-channel convolution of the layer's kernel size and ``B``
a 1×1 convolution initialised at zero (so training starts exactly from the pretrained model).  When
training ends the updates are folded into the weights (:func:`merge_lora`), so the bundle holds the
ordinary model: same keys, same format, nothing for ``apply`` to know.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LoRA", "add_lora", "merge_lora"]


def _pair(size: tuple[int, ...]) -> tuple[int, int]:
    """A 2-d convolution's (kernel size, stride, ...) pair, typed as one."""
    a, b = size
    return a, b


class LoRA(nn.Module):
    """A frozen ``base`` layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Conv2d | nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.scale = float(alpha) / rank
        self.down: nn.Conv2d | nn.Linear
        self.up: nn.Conv2d | nn.Linear
        if isinstance(base, nn.Conv2d):
            padding = base.padding if isinstance(base.padding, str) else _pair(base.padding)
            self.down = nn.Conv2d(
                base.in_channels,
                rank,
                _pair(base.kernel_size),
                _pair(base.stride),
                padding,
                _pair(base.dilation),
                bias=False,
                padding_mode=base.padding_mode,
            )
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))

    @torch.no_grad()
    def merged(self) -> nn.Module:
        up = self.up.weight.reshape(self.up.weight.shape[0], -1)  # [out, rank]
        down = self.down.weight  # [rank, in, (k, k)]
        self.base.weight += self.scale * torch.einsum("or,r...->o...", up, down)
        for p in self.base.parameters():
            p.requires_grad_(True)
        return self.base


def _eligible(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.groups == 1) or isinstance(module, nn.Linear)


def add_lora(model: nn.Module, names: list[str], rank: int, alpha: float) -> list[str]:
    """Wrap the eligible layers at or under the module ``names``; returns the wrapped layer names."""
    prefixes = tuple(n + "." for n in names)
    targets = [n for n, m in model.named_modules() if n and _eligible(m) and (n in names or n.startswith(prefixes))]
    for name in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, LoRA(getattr(parent, attr), rank, alpha))
    return targets


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its layer (in place); returns how many were merged."""
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRA)]
    for name in wrapped:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, getattr(parent, attr).merged())
    return len(wrapped)
