"""Backbones, built through one registry and the ``create_model`` factory."""

from downscale.models.factory import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]


def list_models() -> list[str]:
    from downscale.models.factory import _ensure_builtin

    _ensure_builtin()
    return MODELS.names()
