"""Shared pieces of the backbones: conditioning, conditional norms, blocks, resizing.

Conditioning (FGN / AIFS-CRPS style).  The 1-D inputs of a forward pass are
``c = concat(f, z)``: the forcings ``f`` [B, F] and, for a stochastic model,
fresh noise ``z ~ N(0, 1)`` [B, n_noise] drawn by :func:`standard_normal` from
the ``generator`` given to the forward pass, or from torch's global RNG when it
is ``None`` (then ``torch.manual_seed`` makes it reproducible).  On CPU,
``torch.Generator().manual_seed(s)`` draws the same values as the global RNG
after ``torch.manual_seed(s)``.  Each forward pass is then one ensemble member.
``c`` enters the network through its normalisation layers: a
:class:`ConditionalNorm` normalises without affine and applies a per-channel
scale and shift computed by a small MLP of ``c`` (FiLM).  With no forcings and
no noise (``cond_dim == 0``) it is a plain GroupNorm / LayerNorm with a learned
affine.

Size-agnostic resizing.  Everything that changes a grid size goes through
:func:`resize` (bilinear, ``align_corners=False``, to an *exact* size), so no
layer depends on the grid sizes and any ratio (not only powers of 2) works.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CondSequential",
    "ConditionalLayerNorm",
    "ConditionalNorm",
    "ConditionedBlock",
    "FineHead",
    "PaddingMode",
    "ceil_to",
    "fine_extras",
    "geometric_sizes",
    "group_count",
    "noise_and_forcings",
    "resize",
    "standard_normal",
    "variant",
]

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
"""The border padding of a convolution (``nn.Conv2d``'s ``padding_mode``)."""


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of [B, C, h, w] to exactly ``size`` (no-op when it already has it)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def geometric_sizes(src: tuple[int, int], dst: tuple[int, int], stages: int) -> list[tuple[int, int]]:
    """``stages`` grid sizes going geometrically from ``src`` to ``dst``; the last is exactly ``dst``.

    A fixed number of upsampling stages serves any ratio: for a ratio of 4 and two
    stages each stage is a ×2 resize, for 3.5 each is ×1.87, for 8 each is ×2.83.
    """
    (h, w), (hh, ww) = src, dst
    sizes = []
    for k in range(1, stages + 1):
        t = k / stages
        sizes.append((max(1, round(h * (hh / h) ** t)), max(1, round(w * (ww / w) ** t))))
    if sizes:
        sizes[-1] = (int(hh), int(ww))
    return sizes


def standard_normal(
    *size: int,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """N(0, 1) draws of ``size`` on ``device``.

    With a ``generator`` they are drawn from it, on the generator's device, then moved to
    ``device`` when one is given (as :func:`downscale.models.heads.sample_gamma` does); with
    ``None``, from torch's global RNG directly on ``device`` (torch's default device when ``None``).
    """
    if generator is None:
        return torch.randn(*size, device=device, dtype=dtype)
    z = torch.randn(*size, generator=generator, device=generator.device, dtype=dtype)
    return z if device is None else z.to(device)


def noise_and_forcings(
    f: torch.Tensor | None,
    n_noise: int,
    batch: int,
    *,
    like: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | None:
    """The conditioning vector ``c = concat(f, z)`` [B, F + n_noise], or ``None`` when empty.

    ``z`` is drawn afresh on every call by :func:`standard_normal`: from ``generator``, or from
    torch's global RNG when it is ``None``.  ``f`` may be ``None`` or have zero columns.  ``like``
    gives device and dtype when ``f`` is absent.
    """
    parts = []
    if f is not None and f.shape[-1] > 0:
        parts.append(f.reshape(batch, -1))
    ref = f if f is not None else like
    if n_noise > 0:
        device, dtype = (ref.device, ref.dtype) if ref is not None else (None, None)
        parts.append(standard_normal(batch, n_noise, generator=generator, device=device, dtype=dtype))
    if not parts:
        return None
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def group_count(channels: int, groups: int) -> int:
    """The largest divisor of ``channels`` that is at most ``groups``."""
    g = max(1, min(groups, channels))
    while channels % g:
        g -= 1
    return g


class _FiLM(nn.Module):
    """Per-channel (scale, shift): a learned affine, plus a small MLP of ``c`` when ``cond_dim > 0``.

    The MLP's last layer starts small (not zero, so that gradients reach every
    parameter from the first step): at initialisation scale ≈ 1 and shift ≈ 0.
    """

    def __init__(self, channels: int, cond_dim: int, hidden: int = 64, init_std: float = 1e-2) -> None:
        super().__init__()
        self.channels, self.cond_dim = channels, cond_dim
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.mlp: nn.Sequential | None = None
        if cond_dim > 0:
            first, last = nn.Linear(cond_dim, hidden), nn.Linear(hidden, 2 * channels)
            nn.init.normal_(last.weight, std=init_std)
            nn.init.zeros_(last.bias)
            self.mlp = nn.Sequential(first, nn.SiLU(), last)

    def forward(self, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift), each [C] (unconditioned) or [B, C]."""
        if self.mlp is None or c is None:
            return self.weight, self.bias
        ds, db = self.mlp(c).chunk(2, dim=-1)
        return self.weight + ds, self.bias + db


class ConditionalNorm(nn.Module):
    """GroupNorm (no affine) followed by FiLM from the conditioning vector: x [B, C, H, W], c [B, cond_dim]."""

    def __init__(self, channels: int, cond_dim: int = 0, groups: int = 8, hidden: int = 64, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(group_count(channels, groups), channels, eps=eps, affine=False)
        self.film = _FiLM(channels, cond_dim, hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        scale, shift = self.film(c)
        if scale.dim() == 1:
            return self.norm(x) * scale[:, None, None] + shift[:, None, None]
        return self.norm(x) * scale[:, :, None, None] + shift[:, :, None, None]


class ConditionalLayerNorm(nn.Module):
    """LayerNorm over the last dimension (no affine) followed by FiLM: x [B, N, D], c [B, cond_dim]."""

    def __init__(self, dim: int, cond_dim: int = 0, hidden: int = 64, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.film = _FiLM(dim, cond_dim, hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        scale, shift = self.film(c)
        y = F.layer_norm(x, (self.dim,), eps=self.eps)
        if scale.dim() == 1:
            return y * scale + shift
        return y * scale[:, None, :] + shift[:, None, :]


class ConditionedBlock(nn.Module):
    """Pre-activation residual block: (norm(x, c) → act → conv3×3) twice, plus a (1×1) skip.

    Border padding is ``padding_mode`` (replicate by default: no artificial zero
    coastline at the domain edges).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        cond_dim: int = 0,
        groups: int = 8,
        padding_mode: PaddingMode = "replicate",
        act_layer: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = ConditionalNorm(in_channels, cond_dim, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode=padding_mode)
        self.norm2 = ConditionalNorm(out_channels, cond_dim, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, padding_mode=padding_mode)
        self.act = act_layer()
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x, c)))
        h = self.conv2(self.act(self.norm2(h, c)))
        return self.skip(x) + h


class CondSequential(nn.ModuleList):
    """A sequence of blocks that all take ``(x, c)``; state-dict keys as ``nn.Sequential``."""

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, c)
        return x


class FineHead(nn.Module):
    """From coarse features to the fine grid (H, W).

    ``stages`` upsampling stages, each an exact resize (sizes from
    :func:`geometric_sizes`, the last exactly (H, W)) followed by a
    :class:`ConditionedBlock`; then the fine stage: the features are concatenated
    with ``extra`` fine-grid fields (the static fields and the bilinearly
    upsampled predictors), merged by a 3×3 conv, refined by ``blocks``
    conditioned blocks and mapped to ``out_channels`` by norm → act → 1×1 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        n_extra: int = 0,
        cond_dim: int = 0,
        stages: int = 2,
        blocks: int = 2,
        groups: int = 8,
        padding_mode: PaddingMode = "replicate",
    ) -> None:
        super().__init__()
        self.ups = nn.ModuleList(
            ConditionedBlock(in_channels if i == 0 else width, width, cond_dim, groups, padding_mode)
            for i in range(stages)
        )
        src = width if stages else in_channels
        self.merge = nn.Conv2d(src + n_extra, width, 3, padding=1, padding_mode=padding_mode)
        self.blocks = CondSequential(
            ConditionedBlock(width, width, cond_dim, groups, padding_mode) for _ in range(blocks)
        )
        self.norm = ConditionalNorm(width, cond_dim, groups)
        self.act = nn.SiLU()
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None, extra: torch.Tensor | None, out_shape: tuple[int, int]
    ) -> torch.Tensor:
        out_shape = (int(out_shape[0]), int(out_shape[1]))
        src = (int(z.shape[-2]), int(z.shape[-1]))
        for size, block in zip(geometric_sizes(src, out_shape, len(self.ups)), self.ups, strict=False):
            z = block(resize(z, size), c)
        z = resize(z, out_shape)
        if extra is not None and extra.shape[1] > 0:
            z = torch.cat([z, extra], dim=1)
        z = self.blocks(self.merge(z), c)
        return self.out(self.act(self.norm(z, c)))


def fine_extras(x: torch.Tensor, s: torch.Tensor, n_static: int, out_shape: tuple[int, int]) -> torch.Tensor:
    """[B, C + S, H, W]: the predictors resized to the fine grid and the static fields."""
    parts = [resize(x, out_shape)]
    if n_static:
        parts.append(s)
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def ceil_to(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def variant(cls: type[nn.Module], name: str, doc: str, **defaults: object) -> Callable[..., nn.Module]:
    """A factory for ``cls`` with other defaults, registered as a short name (timm's variants).

    Its signature is the class's with the new defaults, so that
    ``check_model_options`` validates options against it as for the class.
    """
    sig = inspect.signature(cls)
    unknown = set(defaults) - set(sig.parameters)
    if unknown:
        raise TypeError(f"{cls.__name__} has no option(s) {sorted(unknown)}")
    params = [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in sig.parameters.values()]
    signature = sig.replace(parameters=params, return_annotation=cls)

    def factory(*args: object, **kwargs: object) -> nn.Module:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return cls(**bound.arguments)

    factory.__dict__["__signature__"] = signature  # what inspect.signature reads (not a typed attribute)
    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    factory.__module__ = cls.__module__
    return factory
