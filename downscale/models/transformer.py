"""A vision transformer on the coarse grid (timm blocks), with a convolutional head to the fine grid.

- Tokens: a ``patch × patch`` conv of the coarse predictors (``patch=1`` by
  default: coarse grids are small, every coarse point is a token).  When a side is
  not a multiple of ``patch`` the input is first resized (bilinear) to the next
  multiple, so that the token map still covers exactly the domain.
- Positions: a depthwise 3×3 conv over the token map (a conditional positional
  encoding, CPVT's "PEG"), applied at the embedding and after the first block.
  It is computed on the fly from the map itself, so any grid size works (no
  fixed-size learned table), and its zero padding tells tokens where the domain
  edges are.
- Blocks: :class:`timm.models.vision_transformer.Block` (timm's attention and
  MLP), whose two LayerNorms are replaced by conditional LayerNorms, so the 1-D
  inputs ``c = concat(f, z)`` (forcings, and noise for a stochastic model)
  modulate every block by FiLM (DiT / AIFS-CRPS style).  Without forcings and
  noise they are plain LayerNorms with a learned affine.
- Head: the token map is projected to ``width`` channels and goes through the
  shared :class:`~downscale.models.layers.FineHead`: ``up_stages`` resize +
  conditioned conv stages up to exactly (H, W), where the static fields and the
  upsampled predictors are concatenated, then ``fine_blocks`` conv blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from downscale.models.factory import register_model
from downscale.models.layers import (
    ConditionalLayerNorm,
    FineHead,
    PaddingMode,
    ceil_to,
    fine_extras,
    noise_and_forcings,
    resize,
    variant,
)

__all__ = ["CoarseViT", "ConditionedViTBlock"]


class ConditionedViTBlock(nn.Module):
    """timm's ViT block with its two LayerNorms made conditional: ``forward(tokens, c)``.

    The :class:`timm.models.vision_transformer.Block` is held, not subclassed, so
    that timm is imported only when a model is built (``import downscale`` and
    ``list_models`` stay fast).
    """

    def __init__(self, dim: int, num_heads: int, cond_dim: int = 0, **kwargs) -> None:

        from timm.models.vision_transformer import Block

        super().__init__()
        self.block = Block(dim, num_heads, **kwargs)
        self.block.norm1 = ConditionalLayerNorm(dim, cond_dim)
        self.block.norm2 = ConditionalLayerNorm(dim, cond_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        b = self.block
        x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x, c))))
        x = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x, c))))
        return x


class PosConv(nn.Module):
    """Conditional positional encoding: x + depthwise 3×3 conv(x) on the token map [B, D, h, w]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(x)


class CoarseViT(nn.Module):
    """Patch tokens of the coarse grid → ``depth`` conditioned timm blocks → conv head to (H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_forcings: int = 0,
        n_static: int = 0,
        n_noise: int = 0,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        patch: int = 1,
        drop_path: float = 0.0,
        width: int = 48,
        up_stages: int = 2,
        fine_blocks: int = 2,
        groups: int = 8,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a multiple of num_heads ({num_heads})")
        self.n_forcings, self.n_static, self.n_noise, self.patch = n_forcings, n_static, n_noise, patch
        cond = n_forcings + n_noise
        self.embed = nn.Conv2d(in_channels, embed_dim, patch, stride=patch)
        self.pos = nn.ModuleList([PosConv(embed_dim), PosConv(embed_dim)])
        rates = [drop_path * k / max(depth - 1, 1) for k in range(depth)]
        self.blocks = nn.ModuleList(
            ConditionedViTBlock(embed_dim, num_heads, cond, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=rates[k])
            for k in range(depth)
        )
        self.norm = ConditionalLayerNorm(embed_dim, cond)
        self.proj = nn.Conv2d(embed_dim, width, 1)
        self.head = FineHead(
            width,
            out_channels,
            width=width,
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
        b, _, h, w = x.shape
        c = noise_and_forcings(f if self.n_forcings else None, self.n_noise, b, like=x, generator=generator)
        p = self.patch
        z = self.pos[0](self.embed(resize(x, (ceil_to(h, p), ceil_to(w, p)))))
        gh, gw = z.shape[-2:]
        t = z.flatten(2).transpose(1, 2)  # [B, N, D]
        for k, block in enumerate(self.blocks):
            t = block(t, c)
            if k == 0:
                t = self.pos[1](t.transpose(1, 2).reshape(b, -1, gh, gw)).flatten(2).transpose(1, 2)
        t = self.norm(t, c)
        z = self.proj(t.transpose(1, 2).reshape(b, -1, gh, gw))
        return self.head(z, c, fine_extras(x, s, self.n_static, out_shape), out_shape)


register_model("vit")(CoarseViT)
register_model("vit_small")(
    variant(
        CoarseViT,
        "vit_small",
        "CoarseViT with 64-d tokens, 2 blocks, 2 heads and a 32-channel head.",
        embed_dim=64,
        depth=2,
        num_heads=2,
        width=32,
    )
)
