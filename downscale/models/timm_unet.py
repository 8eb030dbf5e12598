"""A UNet whose encoder is any timm ``features_only`` backbone (ConvNeXt-V2, ResNet, EfficientNet, ...).

- Stem: coarse grids are tiny (5 × 7 … 16 × 16) and timm encoders reduce by up
  to 32, so the predictors are first resized (bilinear) by ``stem_scale`` and up
  to the next multiple of the encoder's largest reduction: 5 × 7 → 20 × 28 →
  32 × 32.  Resizing (not padding) keeps the whole map an image of exactly the
  domain, so nothing has to be cropped later and every level stays aligned.
- Encoder: ``timm.create_model(encoder, features_only=True, pretrained=False,
  in_chans=in_channels, out_indices=...)``.  Never pretrained: no weights are
  downloaded, and ImageNet statistics are no prior for climate fields.  Its
  convolutions keep timm's zero padding.
- Decoder: generic over ``feature_info.channels()``; from the deepest feature
  up, each stage resizes to the next skip's *exact* size, concatenates it and
  applies a conditioned conv block (decoder widths = the encoder's channels).
- 1-D inputs ``c = concat(f, z)`` (forcings, and noise for a stochastic model)
  are injected at the deepest feature (a linear projection added to the map) and
  modulate every decoder norm by FiLM.
- Head: the shared :class:`~downscale.models.layers.FineHead`: ``up_stages``
  resize + conv stages up to exactly (H, W), where the static fields and the
  upsampled predictors are concatenated, then ``fine_blocks`` conv blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from downscale.errors import RecipeError, closest
from downscale.models.factory import register_model
from downscale.models.layers import (
    ConditionedBlock,
    FineHead,
    PaddingMode,
    ceil_to,
    fine_extras,
    noise_and_forcings,
    resize,
)

if TYPE_CHECKING:
    from timm.models import FeatureInfo

__all__ = ["TimmUNet"]


class DecoderStage(nn.Module):
    """Resize to the skip's exact size, concatenate it, then a conditioned block."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        cond_dim: int,
        groups: int,
        padding_mode: PaddingMode,
    ) -> None:
        super().__init__()
        self.block = ConditionedBlock(in_channels + skip_channels, out_channels, cond_dim, groups, padding_mode)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.block(torch.cat([resize(x, skip.shape[-2:]), skip], dim=1), c)


def _create_encoder(name: str, in_channels: int, out_indices: Sequence[int] | None) -> nn.Module:
    import timm  # here, not at import time: listing models stays fast

    if not timm.is_model(name):
        near = closest(name, timm.list_models())
        raise RecipeError(
            f"timm_unet: unknown timm encoder '{name}'",
            expected="a timm model name (timm.list_models()) that supports features_only",
            fix=f"did you mean '{near}'?" if near else "pick a name from timm.list_models()",
        )
    kwargs: dict[str, Any] = {"out_indices": tuple(out_indices)} if out_indices is not None else {}
    return timm.create_model(name, features_only=True, pretrained=False, in_chans=in_channels, **kwargs)


class TimmUNet(nn.Module):
    """Upsampled coarse input → timm ``features_only`` encoder → UNet decoder → fine head to (H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        n_noise: int = 0,
        encoder: str = "convnextv2_atto",
        out_indices: Sequence[int] | None = None,
        stem_scale: float = 4.0,
        width: int = 32,
        up_stages: int = 2,
        fine_blocks: int = 2,
        groups: int = 8,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        self.n_forcings, self.n_static, self.n_noise = n_forcings, n_static, n_noise
        self.stem_scale = float(stem_scale)
        cond = n_forcings + n_noise
        self.encoder = _create_encoder(encoder, in_channels, out_indices)
        # timm types create_model as returning a plain nn.Module; a features_only model has a FeatureInfo
        info = cast("FeatureInfo", self.encoder.feature_info)
        chans = list(info.channels())
        self.max_reduction = int(max(info.reduction()))
        self.inject = nn.Linear(cond, chans[-1]) if cond else None
        self.bottleneck = ConditionedBlock(chans[-1], chans[-1], cond, groups, padding_mode)
        self.decoder = nn.ModuleList(
            DecoderStage(chans[k + 1], chans[k], chans[k], cond, groups, padding_mode)
            for k in reversed(range(len(chans) - 1))
        )
        self.head = FineHead(
            chans[0],
            out_channels,
            width=width,
            n_extra=in_channels + n_static,
            cond_dim=cond,
            stages=up_stages,
            blocks=fine_blocks,
            groups=groups,
            padding_mode=padding_mode,
        )

    def stem_size(self, h: int, w: int) -> tuple[int, int]:
        """The encoder's input size for a coarse grid of h × w."""
        r = self.max_reduction
        return ceil_to(max(1, round(h * self.stem_scale)), r), ceil_to(max(1, round(w * self.stem_scale)), r)

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
        c = noise_and_forcings(f if self.n_forcings else None, self.n_noise, b, like=x, generator=generator)
        feats = self.encoder(resize(x, self.stem_size(h, w)))
        z = feats[-1]
        if self.inject is not None:
            z = z + self.inject(c)[:, :, None, None]
        z = self.bottleneck(z, c)
        for stage, skip in zip(self.decoder, reversed(feats[:-1]), strict=False):
            z = stage(z, skip, c)
        return self.head(z, c, fine_extras(x, s, self.n_static, out_shape), out_shape)


register_model("timm_unet")(TimmUNet)
