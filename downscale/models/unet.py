"""A Doury-style UNet that downscales: coarse encoder, bottleneck with the 1-D inputs, decoder beyond the input size.

After Doury et al. (2023), "Regional climate model emulator based on deep
learning" (Climate Dynamics): a UNet encodes the coarse predictors, the 1-D
inputs (forcings; here also the noise of a stochastic model) join at the
bottleneck, and the decoder climbs back through the skip connections and then
*beyond* the input size to the RCM grid.

Size-agnostic by construction:

- downsampling is a stride-2 3×3 conv with padding 1, so an odd size ``n`` gives
  ``ceil(n / 2)`` (5 × 7 → 3 × 4 → 2 × 2) and nothing is lost;
- on the way up, the features are resized to each skip's *exact* size;
- beyond the input size a fixed number of stages (``up_stages``) resizes to sizes
  spaced geometrically between the coarse and the fine grid, the last exactly
  (H, W), so that any ratio (3.5, 4.1, 8, ...) runs with the same layers;
- the static fine-grid fields (orography) and the bilinearly upsampled predictors
  are concatenated at the fine-resolution stage.

The 1-D inputs ``c = concat(f, z)`` are projected by a linear layer and added,
broadcast, to the bottleneck map, and they modulate every norm (FiLM, see
:mod:`downscale.models.layers`).
"""

from __future__ import annotations

import torch
from torch import nn

from downscale.models.factory import register_model
from downscale.models.layers import (
    ConditionedBlock,
    FineHead,
    PaddingMode,
    fine_extras,
    noise_and_forcings,
    resize,
    variant,
)

__all__ = ["UNet"]


class DownStage(nn.Module):
    """Stride-2 conv (ceil-size output) then a conditioned block."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, groups: int, padding_mode: PaddingMode
    ) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, padding_mode=padding_mode)
        self.block = ConditionedBlock(out_channels, out_channels, cond_dim, groups, padding_mode)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.block(self.down(x), c)


class UpStage(nn.Module):
    """Resize to the skip's exact size, concatenate it, then a conditioned block."""

    def __init__(
        self, in_channels: int, skip_channels: int, cond_dim: int, groups: int, padding_mode: PaddingMode
    ) -> None:
        super().__init__()
        self.block = ConditionedBlock(in_channels + skip_channels, skip_channels, cond_dim, groups, padding_mode)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.block(torch.cat([resize(x, skip.shape[-2:]), skip], dim=1), c)


class UNet(nn.Module):
    """Coarse UNet (``depth`` downsamplings) → ``up_stages`` stages beyond the input → fine stage.

    Channels double at each downsampling (``base_channels`` · 2^k).  With
    ``n_noise > 0`` each forward pass draws fresh noise: one ensemble member.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        n_noise: int = 0,
        base_channels: int = 32,
        depth: int = 2,
        fine_blocks: int = 2,
        up_stages: int = 2,
        groups: int = 8,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        self.n_forcings, self.n_static, self.n_noise = n_forcings, n_static, n_noise
        cond = n_forcings + n_noise
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, padding_mode=padding_mode)
        self.enc0 = ConditionedBlock(widths[0], widths[0], cond, groups, padding_mode)
        self.downs = nn.ModuleList(
            DownStage(widths[k], widths[k + 1], cond, groups, padding_mode) for k in range(depth)
        )
        self.inject = nn.Linear(cond, widths[-1]) if cond else None
        self.mid = ConditionedBlock(widths[-1], widths[-1], cond, groups, padding_mode)
        self.ups = nn.ModuleList(
            UpStage(widths[k + 1], widths[k], cond, groups, padding_mode) for k in reversed(range(depth))
        )
        self.head = FineHead(
            widths[0],
            out_channels,
            width=base_channels,
            n_extra=in_channels + n_static,
            cond_dim=cond,
            stages=up_stages,
            blocks=fine_blocks,
            groups=groups,
            padding_mode=padding_mode,
        )

    def forward(
        self,
        x: torch.Tensor,
        f: torch.Tensor,
        s: torch.Tensor,
        out_shape: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        c = noise_and_forcings(f if self.n_forcings else None, self.n_noise, x.shape[0], like=x, generator=generator)
        z = self.enc0(self.stem(x), c)
        skips = [z]
        for down in self.downs:
            z = down(z, c)
            skips.append(z)
        if self.inject is not None:
            z = z + self.inject(c)[:, :, None, None]
        z = self.mid(z, c)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=False):
            z = up(z, skip, c)
        return self.head(z, c, fine_extras(x, s, self.n_static, out_shape), out_shape)


register_model("unet")(UNet)
register_model("unet_small")(
    variant(UNet, "unet_small", "UNet with 16 base channels and one fine block.", base_channels=16, fine_blocks=1)
)
register_model("unet_large")(
    variant(UNet, "unet_large", "UNet with 64 base channels and three downsamplings.", base_channels=64, depth=3)
)
