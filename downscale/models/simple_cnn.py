"""A small size-agnostic CNN: encode on the coarse grid, decode on the fine grid.

The coarse encoder sees the predictors (and the forcings as constant channels).
Its features are interpolated to the fine grid size, where they meet the static
fields (orography) and a few residual blocks produce the targets.  Nothing in it
depends on the grid sizes, so it runs on any domain and any ratio.

With ``n_noise > 0`` it is stochastic: the residual blocks become conditioned
blocks whose norms are modulated (FiLM) by ``c = concat(f, z)`` with fresh noise
``z`` at each forward pass (one ensemble member per pass).  With ``n_noise=0``
(default) the network is unchanged: the same layers and state-dict keys.
``noise_maps > 0`` adds that many fresh N(0, 1) fields on the fine grid to the
decoder's input, so that members can differ at the grid scale (a global ``z``
alone mostly modulates large scales); with a CRPS head the spread is learned.
Both are drawn from the forward pass's ``generator`` (torch's global RNG when
``None``), ``z`` first, then the maps.
"""

from __future__ import annotations

import torch
from torch import nn

from downscale.models.factory import register_model
from downscale.models.layers import (
    ConditionedBlock,
    CondSequential,
    PaddingMode,
    noise_and_forcings,
    resize,
    standard_normal,
)

__all__ = ["SimpleCNN"]


class ResBlock(nn.Module):
    def __init__(self, width: int, padding_mode: PaddingMode = "replicate") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, padding_mode=padding_mode)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, padding_mode=padding_mode)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class SimpleCNN(nn.Module):
    """Coarse residual encoder → resize to the fine grid → fine residual decoder."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        n_noise: int = 0,
        noise_maps: int = 0,
        width: int = 48,
        coarse_blocks: int = 2,
        fine_blocks: int = 3,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        self.n_forcings, self.n_static, self.n_noise = n_forcings, n_static, n_noise
        if noise_maps < 0:
            raise ValueError(f"noise_maps must be >= 0, got {noise_maps}")
        self.noise_maps = noise_maps
        cond = n_forcings + n_noise

        def block() -> nn.Module:
            if n_noise:
                return ConditionedBlock(width, width, cond, padding_mode=padding_mode, act_layer=nn.GELU)
            return ResBlock(width, padding_mode)

        self.stem = nn.Conv2d(in_channels + n_forcings, width, 3, padding=1, padding_mode=padding_mode)
        self.coarse = CondSequential(block() for _ in range(coarse_blocks))
        self.merge = nn.Conv2d(
            width + in_channels + n_static + noise_maps, width, 3, padding=1, padding_mode=padding_mode
        )
        self.fine = CondSequential(block() for _ in range(fine_blocks))
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        f: torch.Tensor,
        s: torch.Tensor,
        out_shape: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        b, _, h, w = x.shape
        inp = x
        if self.n_forcings:
            inp = torch.cat([x, f[:, :, None, None].expand(b, self.n_forcings, h, w)], dim=1)
        c = (
            noise_and_forcings(f if self.n_forcings else None, self.n_noise, b, like=x, generator=generator)
            if self.n_noise
            else None
        )
        z = self.coarse(self.stem(inp), c)
        size = (int(out_shape[0]), int(out_shape[1]))
        parts = [resize(z, size), resize(x, size)] + ([s] if self.n_static else [])
        if self.noise_maps:
            parts.append(
                standard_normal(b, self.noise_maps, *size, generator=generator, device=x.device, dtype=z.dtype)
            )
        z = self.fine(self.merge(torch.cat(parts, dim=1)), c)
        return self.head(z)


register_model("simple_cnn")(SimpleCNN)
