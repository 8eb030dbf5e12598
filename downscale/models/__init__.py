"""Backbones and heads: what a bundle's model is.

Backbones are built through one registry and the ``create_model`` factory; heads (the loss and the
prediction of each target variable) through :data:`~downscale.models.losses.HEADS` and ``create_criterion``.
Importing the package registers the built-in ones (as timm's ``timm.models`` does).
"""

from downscale.models import deepesd, heads, simple_cnn, timm_unet, transformer, unet  # noqa: F401 - registers
from downscale.models.factory import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]


def list_models() -> list[str]:
    """The names of the registered backbones."""
    return MODELS.names()
