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
    for key, value in kwargs.items():
        _check_size(name, key, value, params[key].default)
    return cls


#: options that count things and may be 0 (no noise, no extra blocks or stages); every other whole-number
#: option whose default is positive is a size (a width, a number of channels or heads, a window) and must be >= 1
_MAY_BE_ZERO = frozenset({"n_noise", "noise_maps", "coarse_blocks", "fine_blocks", "up_stages", "depth"})


def _check_size(model: str, key: str, value: Any, default: Any) -> None:
    """Whole-number options: integers, >= 0 for counts and >= 1 for sizes; a tuple of sizes: each >= 1."""
    if value is None or isinstance(default, bool) or default is inspect.Parameter.empty:
        return
    if isinstance(default, int):
        low = 0 if key in _MAY_BE_ZERO or default == 0 else 1
        values, what = [value], f"an integer >= {low}"
    elif isinstance(default, tuple) and default and all(isinstance(d, int) for d in default):
        low, what = 1, "a list of integers >= 1"
        values = list(value) if isinstance(value, (list, tuple)) and value else [None]
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0
        if not ok or (default > 0 and value == 0 and key not in ("drop_path",)):
            raise RecipeError(
                f"model '{model}': option '{key}' must be a positive number",
                found=repr(value),
                expected=f"a number > 0 (default {default})",
                fix=f"set model.{key} to a positive value, or remove it for the default",
            )
        return
    else:
        return
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values):
        raise RecipeError(
            f"model '{model}': option '{key}' must be {what}",
            found=repr(value),
            expected=f"{what} (default {default!r})",
            fix=f"set model.{key} to {low if low else 0} or more, or remove it for the default",
        )


def create_model(
    name: str, *, in_channels: int, out_channels: int, n_forcings: int = 0, n_static: int = 0, **kwargs: Any
) -> nn.Module:
    """Build a registered model.  ``None`` values are dropped so that an unset
    recipe value never overrides a model's default."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cls = check_model_options(name, kwargs)
    return cls(in_channels=in_channels, out_channels=out_channels, n_forcings=n_forcings, n_static=n_static, **kwargs)
