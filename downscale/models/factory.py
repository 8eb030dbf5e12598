"""The model registry and the one factory, ``create_model``.

Every backbone takes the same call, ``model(x, f, s, out_shape, *, generator=None)``:

- ``x`` [B, C, h, w]: coarse 2-D predictors;
- ``f`` [B, F]: 1-D forcings;
- ``s`` [B, S, H, W]: static fine-grid fields (S may be 0);
- ``out_shape``: (H, W) of the fine grid;
- ``generator``: the ``torch.Generator`` that a stochastic model draws its noise from
  (on the generator's device, then moved to the input's); ``None`` draws from torch's
  global RNG.  Every backbone accepts it, deterministic ones included (they ignore it);

and returns [B, V, H, W].  Backbones are size-agnostic: any coarse size, any
fine size, any ratio between them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from downscale.errors import RecipeError
from downscale.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "check_model_options", "create_model", "register_model"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")  # classes, and variants' factories
register_model = MODELS.register

_CORE = ("in_channels", "out_channels", "n_forcings", "n_static")


def check_model_options(name: str, kwargs: dict[str, Any]) -> Callable[..., nn.Module]:
    """The registered class (or variant's factory) for ``name``, after checking its options (fails fast, before any data is read)."""
    cls = MODELS.get(name)
    params = inspect.signature(cls).parameters
    valid = [p for p in params if p not in _CORE]
    unknown = [k for k in kwargs if k not in params or k in _CORE]
    if unknown:
        from downscale.errors import closest

        near = closest(unknown[0], valid)
        raise RecipeError(
            f"model '{name}' has no option '{unknown[0]}'",
            expected=f"one of {', '.join(valid)}",
            fix=f"did you mean '{near}'?" if near else "remove it from the model section",
        )
    return cls


def create_model(
    name: str, *, in_channels: int, out_channels: int, n_forcings: int = 0, n_static: int = 0, **kwargs: Any
) -> nn.Module:
    """Build a registered model.  ``None`` values are dropped so that an unset
    recipe value never overrides a model's default."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cls = check_model_options(name, kwargs)
    return cls(in_channels=in_channels, out_channels=out_channels, n_forcings=n_forcings, n_static=n_static, **kwargs)
