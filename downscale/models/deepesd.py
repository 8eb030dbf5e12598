"""DeepESD: the convolutional statistical-downscaling network of Baño-Medina et al.

Baño-Medina, Manzanas & Gutiérrez (2020, GMD; 2022, GMD "DeepESD"): three 3×3
conv layers with ReLU (50, 25 and 10 filters) on the coarse predictors, then a
dense layer from *all* coarse features to *all* fine grid points.

That dense layer ties the network to one pair of grids, so here it is replaced
by its size-agnostic equivalent, a *local* dense layer:

1. ``window``: a linear ``window × window`` conv on the coarse grid gathers, for
   each coarse point, the 10 features of its neighbourhood into ``hidden``
   channels (the dense layer's weights, restricted to a neighbourhood and shared
   across the domain);
2. these are upsampled bilinearly to the fine grid (H, W), where the static
   fields (orography) join them;
3. a small head of 1×1 convs (``hidden`` → ``head_width`` → out, ReLU between)
   gives each fine point its targets.

With the defaults this has ~100–150 k parameters, of the order of the original
per-point output layer, and stays as shallow.

1-D inputs.  The original has none.  Forcings and noise (``c = concat(f, z)``)
enter through conditional norms after each coarse conv (GroupNorm + FiLM, see
:mod:`downscale.models.layers`).  ``norm=None`` (default) adds these norms only
when there is something to condition on (forcings or noise), so the plain model
stays the original's conv → ReLU; ``norm=True`` adds them always.
"""

from __future__ import annotations

import torch
from torch import nn

from downscale.models.factory import register_model
from downscale.models.layers import ConditionalNorm, PaddingMode, noise_and_forcings, resize

__all__ = ["DeepESD"]


class ConvLayer(nn.Module):
    """3×3 conv → (conditional norm) → ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, norm: bool, padding_mode: PaddingMode
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode=padding_mode)
        self.norm = ConditionalNorm(out_channels, cond_dim, groups=5) if norm else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, c)
        return self.act(x)


class DeepESD(nn.Module):
    """Three coarse conv layers → local dense layer → upsample to (H, W) → 1×1 head (+ static fields)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        n_noise: int = 0,
        filters: tuple[int, ...] = (50, 25, 10),
        window: int = 5,
        hidden: int = 256,
        head_width: int = 128,
        norm: bool | None = None,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"DeepESD window must be odd, got {window}")
        self.n_forcings, self.n_static, self.n_noise = n_forcings, n_static, n_noise
        cond = n_forcings + n_noise
        use_norm = bool(cond) if norm is None else bool(norm)
        chans = [in_channels, *filters]
        self.convs = nn.ModuleList(
            ConvLayer(chans[k], chans[k + 1], cond, use_norm, padding_mode) for k in range(len(filters))
        )
        self.dense = nn.Conv2d(chans[-1], hidden, window, padding=window // 2, padding_mode=padding_mode)
        self.head = nn.Sequential(
            nn.Conv2d(hidden + n_static, head_width, 1),
            nn.ReLU(),
            nn.Conv2d(head_width, out_channels, 1),
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
        for conv in self.convs:
            x = conv(x, c)
        z = resize(self.dense(x), out_shape)
        if self.n_static:
            z = torch.cat([z, s], dim=1)
        return self.head(z)


register_model("deepesd")(DeepESD)
