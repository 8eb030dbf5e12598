"""A small size-agnostic CNN: encode on the coarse grid, decode on the fine grid.

The coarse encoder sees the predictors (and the forcings as constant channels).
Its features are interpolated to the fine grid size, where they meet the static
fields (orography) and a few residual blocks produce the targets.  Nothing in it
depends on the grid sizes, so it runs on any domain and any ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from downscale.models.factory import register_model

__all__ = ["SimpleCNN"]


class ResBlock(nn.Module):
    def __init__(self, width: int, padding_mode: str = "replicate") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, padding_mode=padding_mode)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, padding_mode=padding_mode)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class SimpleCNN(nn.Module):
    """Coarse residual encoder → resize to the fine grid → fine residual decoder."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        width: int = 48,
        coarse_blocks: int = 2,
        fine_blocks: int = 3,
        padding_mode: str = "replicate",
    ) -> None:
        super().__init__()
        self.n_forcings, self.n_static = n_forcings, n_static
        self.stem = nn.Conv2d(in_channels + n_forcings, width, 3, padding=1, padding_mode=padding_mode)
        self.coarse = nn.Sequential(*[ResBlock(width, padding_mode) for _ in range(coarse_blocks)])
        self.merge = nn.Conv2d(width + in_channels + n_static, width, 3, padding=1, padding_mode=padding_mode)
        self.fine = nn.Sequential(*[ResBlock(width, padding_mode) for _ in range(fine_blocks)])
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor, f: torch.Tensor, s: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
        b, _, h, w = x.shape
        inp = x
        if self.n_forcings:
            inp = torch.cat([x, f[:, :, None, None].expand(b, self.n_forcings, h, w)], dim=1)
        z = self.coarse(self.stem(inp))
        size = tuple(out_shape)
        up = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
        xup = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        parts = [up, xup] + ([s] if self.n_static else [])
        z = self.fine(self.merge(torch.cat(parts, dim=1)))
        return self.head(z)


register_model("simple_cnn")(SimpleCNN)
