"""Further loss heads: asymmetric MSE, Bernoulli-gamma and ensemble CRPS.

Registered in :data:`downscale.models.losses.HEADS` (the package ``downscale.models`` imports this module).
Shapes as in ``losses``: ``out`` [B, M, channels, H, W], ``y``/``m`` [B, H, W]; every
value is in *normalised* target units.  Heads compute in at least float32 and replace
the target on masked cells by 0 *before* using it, so that garbage there (NaN, inf,
huge values) changes neither the loss nor its gradients.

- ``asymmetric`` (Doury et al. 2024, Clim. Dyn.): mean[(ŷ-y)² + γ(y)·max(0, y-ŷ)²]
  with γ(y) = GammaCDF(y; k, θ): under-predicting heavy precipitation costs up to 2×.
  Options ``gamma_shape`` (k, default 0.5) and ``gamma_scale`` (θ, default 2.0): a gamma
  fitted to wet-day precipitation scaled by its root mean square (the ``scale``
  transform), whose wet days have a mean near 1 and a long tail (wet fraction ~0.4,
  E[y²] = 1  ⇒  k(k+1)θ² ≈ 2.5).  Negative y (``standard`` transform) get γ = 0.
- ``bernoulli_gamma`` (Cannon 2008; DeepESD): channels (logit p, α, β); p = sigmoid,
  α, β = softplus + 1e-6.  A day is wet when y > thr; the wet *amount above the
  threshold* y - thr follows Gamma(shape α, scale β), so the predictive distribution is
  0 with probability 1-p and thr + Gamma(α, β) otherwise; mean p·(thr + αβ).  Wet
  amounts below 1e-6 (normalised) are scored as 1e-6, bounding the density for α < 1.
  Options ``wet_threshold_mm`` (default 1.0 mm/day, converted with the target's Stats)
  or ``threshold`` (normalised units; used as given, and the default 0 when no Stats).
- ``crps``: ensemble CRPS over the M forward passes (``needs_members``), fair by default
  (Ferro 2014; AIFS-CRPS): mean_i |x_i-y| - c·Σ_ij |x_i-x_j| with c = 1/(2M(M-1))
  (``fair``) or 1/(2M²); ``alpha`` < 1 mixes the two (AIFS "almost fair", α=0.95).
  The loss scores raw members; ``predict`` clamps precipitation (``scale``) at 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from downscale.data.units import MM_DAY
from downscale.models.losses import HEADS, Head

if TYPE_CHECKING:
    from downscale.data.normalise import Stats

__all__ = ["AsymmetricHead", "BernoulliGammaHead", "CRPSHead", "sample_gamma"]

_EPS = 1e-6


def _where_mean(elem: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``elem`` over True cells of ``mask``; masked cells are dropped, not multiplied by 0."""
    mask = mask.expand_as(elem)
    return torch.where(mask, elem, torch.zeros_like(elem)).sum() / mask.sum().clamp_min(1)


def _full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in at least float32 (half-precision outputs are promoted; float64 is kept)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _clean(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The target in at least float32 with masked cells set to 0 (safe for every head's formula)."""
    y = _full(y)
    return torch.where(m, y, torch.zeros_like(y))


def _is_scaled(stats: Stats | None) -> bool:
    return stats is not None and getattr(stats, "transform", None) == "scale"


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


def _generator_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def sample_gamma(shape: torch.Tensor, generator: torch.Generator | None = None, max_rounds: int = 64) -> torch.Tensor:
    """Gamma(shape, 1) draws by Marsaglia–Tsang (2000), reproducible through ``generator``.

    Vectorised rejection: each round draws a full tensor of normals and uniforms from
    ``generator`` (on the generator's device) and keeps the first accepted value per cell;
    acceptance is > 95 % per round, so a handful of rounds suffice.  Shapes below 1 use
    Gamma(a) = Gamma(a + 1)·U^(1/a).  The result is on ``shape``'s device, float32.
    """
    dev = _generator_device(generator, shape.device)
    a = shape.detach().to(dev, torch.float32)
    boost = a < 1
    d = torch.where(boost, a + 1, a) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.full_like(a, float("nan"))
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(max_rounds):
        x = torch.randn(a.shape, generator=generator, device=dev)
        u = torch.rand(a.shape, generator=generator, device=dev)
        v = (1 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~take
        if not bool(todo.any()):
            break
    out = torch.where(todo, d, out)  # never reached in practice: the mode of Gamma(d + 1/3)
    u = torch.rand(a.shape, generator=generator, device=dev)
    out = torch.where(boost, out * u.clamp_min(1e-30) ** (1.0 / a), out)
    return out.to(shape.device)


@HEADS.register("asymmetric")
class AsymmetricHead(Head):
    """MSE plus a gamma-CDF-weighted penalty on under-prediction (Doury et al. 2024)."""

    def __init__(
        self,
        variable: str,
        stats: Stats | None = None,
        *,
        gamma_shape: float = 0.5,
        gamma_scale: float = 2.0,
        **params: Any,
    ) -> None:
        super().__init__(variable, stats, **params)
        self.gamma_shape = _positive("gamma_shape", gamma_shape)
        self.gamma_scale = _positive("gamma_scale", gamma_scale)

    def weight(self, y: torch.Tensor) -> torch.Tensor:
        """γ(y) = P(Y ≤ y) under Gamma(k, θ); 0 for y ≤ 0."""
        k = torch.full_like(y, self.gamma_shape)
        return torch.special.gammainc(k, y.clamp_min(0.0) / self.gamma_scale)

    def loss(self, out, y, m):
        y = _clean(y, m)[:, None]
        m = m[:, None]
        yhat = _full(out[:, :, 0])
        under = (y - yhat).clamp_min(0.0)
        elem = (yhat - y) ** 2 + self.weight(y) * under**2
        return _where_mean(elem, m)

    def predict(self, out, mode="mean", generator=None):
        pred = out[:, :, 0]
        return pred.clamp_min(0.0) if _is_scaled(self.stats) else pred


@HEADS.register("bernoulli_gamma")
class BernoulliGammaHead(Head):
    """Wet-day probability and a gamma law of the amount above the wet-day threshold."""

    channels = 3

    def __init__(
        self,
        variable: str,
        stats: Stats | None = None,
        *,
        wet_threshold_mm: float = 1.0,
        threshold: float | None = None,
        **params: Any,
    ) -> None:
        super().__init__(variable, stats, **params)
        if stats is not None and getattr(stats, "transform", "scale") != "scale":
            raise ValueError(
                f"bernoulli_gamma needs a non-negative target normalised with the 'scale' transform "
                f"(precipitation); {variable} uses '{stats.transform}'"
            )
        wet_mm = float(wet_threshold_mm)
        if not (wet_mm >= 0 and math.isfinite(wet_mm)):
            raise ValueError(f"wet_threshold_mm must be >= 0, got {wet_threshold_mm!r}")
        if threshold is not None:
            thr = float(threshold)
            if not (thr >= 0 and math.isfinite(thr)):
                raise ValueError(f"threshold must be >= 0 (normalised units), got {threshold!r}")
        elif stats is not None:
            thr = wet_mm * MM_DAY / float(stats.scale)
        else:
            thr = 0.0  # no statistics (recipe check, unit tests): any positive value is wet
        self.wet_threshold_mm = wet_mm
        self.threshold = thr

    def params(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logit p, α, β) from ``out`` [B, M, 3, H, W], each [B, M, H, W], at least float32."""
        out = _full(out)
        return out[:, :, 0], F.softplus(out[:, :, 1]) + _EPS, F.softplus(out[:, :, 2]) + _EPS

    def nll(self, out: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per cell [B, M, H, W] (0 on masked cells)."""
        logit, alpha, beta = self.params(out)
        y = _clean(y, m)[:, None]
        wet = (y > self.threshold) & m[:, None]
        amount = torch.where(wet, y - self.threshold, torch.ones_like(y)).clamp_min(_EPS)
        log_gamma = (alpha - 1) * torch.log(amount) - amount / beta - alpha * torch.log(beta) - torch.lgamma(alpha)
        ll = torch.where(wet, F.logsigmoid(logit) + log_gamma, F.logsigmoid(-logit))
        return torch.where(m[:, None].expand_as(ll), -ll, torch.zeros_like(ll))

    def loss(self, out, y, m):
        logit = out[:, :, 0]
        return _where_mean(self.nll(out, y, m), m[:, None].expand_as(logit))

    def predict(self, out, mode="mean", generator=None):
        logit, alpha, beta = self.params(out)
        p = torch.sigmoid(logit)
        if mode == "mean":
            pred = p * (self.threshold + alpha * beta)
        elif mode == "sample":
            dev = _generator_device(generator, out.device)
            u = torch.rand(p.shape, generator=generator, device=dev).to(p.device)
            amount = sample_gamma(alpha, generator) * beta
            pred = torch.where(u < p, self.threshold + amount, torch.zeros_like(p))
        else:
            raise ValueError(f"unknown prediction mode {mode!r}; use 'mean' or 'sample'")
        return pred.to(out.dtype)


@HEADS.register("crps")
class CRPSHead(Head):
    """Ensemble CRPS over M stochastic forward passes (fair by default)."""

    needs_members = True

    def __init__(
        self, variable: str, stats: Stats | None = None, *, fair: bool = True, alpha: float = 1.0, **params: Any
    ) -> None:
        super().__init__(variable, stats, **params)
        if not isinstance(fair, bool):
            raise ValueError(f"fair must be true or false, got {fair!r}")
        a = float(alpha)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.fair = fair
        self.alpha = a if fair else 0.0

    def crps(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` [B, M, H, W] members, ``y`` [B, H, W] → CRPS per cell [B, H, W]."""
        n = x.shape[1]
        skill = (x - y[:, None]).abs().mean(dim=1)
        if n == 1:
            return skill
        # Σ_ij |x_i - x_j| = 2 Σ_k (2k - M - 1) x_(k) over the sorted members (k = 1..M).
        xs = torch.sort(x, dim=1).values
        k = torch.arange(1, n + 1, device=x.device, dtype=x.dtype).view(1, n, *([1] * (x.ndim - 2)))
        pair_sum = 2 * ((2 * k - n - 1) * xs).sum(dim=1)
        coef = self.alpha / (2 * n * (n - 1)) + (1 - self.alpha) / (2 * n * n)
        return skill - coef * pair_sum

    def loss(self, out, y, m):
        y = _clean(y, m)
        return _where_mean(self.crps(_full(out[:, :, 0]), y), m)

    def predict(self, out, mode="mean", generator=None):
        pred = out[:, :, 0]  # each member is one forward pass; the caller averages over M
        return pred.clamp_min(0.0) if _is_scaled(self.stats) else pred
