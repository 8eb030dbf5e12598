"""Process-wide settings of ``downscale`` (like ``xarray.set_options`` and xclim's ``cf_compliance``).

* ``plausibility``: what happens when an input field has values outside its variable's plausible range
  (:mod:`downscale.data.plausibility`): ``raise`` (default: a one-line :class:`~downscale.errors.DataError`),
  ``warn`` (a :class:`~downscale.data.plausibility.PlausibilityWarning` with the same line; the data go on
  unchanged) or ``off`` (no check).

Set it for the whole process, or for a block as a context manager::

    downscale.set_options(plausibility="warn")
    with downscale.set_options(plausibility="off"):
        fine = emu.downscale(ds)

A recipe's ``data.plausibility`` applies to ``build_pairs`` (training) only, over this setting.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Literal, get_args

from downscale.errors import UnknownNameError

__all__ = ["OPTIONS", "PLAUSIBILITY", "Plausibility", "get_option", "set_options"]

Plausibility = Literal["raise", "warn", "off"]
PLAUSIBILITY: tuple[str, ...] = get_args(Plausibility)

_VALID: dict[str, tuple[str, ...]] = {"plausibility": PLAUSIBILITY}
#: The current settings (read them with :func:`get_option`).
OPTIONS: dict[str, str] = {"plausibility": "raise"}
_LOCK = threading.Lock()


def _checked(name: str, value: object) -> str:
    if name not in _VALID:
        raise UnknownNameError("option", name, _VALID)
    text = str(value).strip().lower() if isinstance(value, str) else str(value)
    if text not in _VALID[name]:
        raise UnknownNameError(f"{name} setting", str(value), _VALID[name])
    return text


def get_option(name: str) -> str:
    """The current value of setting ``name`` (``get_option("plausibility")`` -> ``"raise"``)."""
    if name not in OPTIONS:
        raise UnknownNameError("option", name, OPTIONS)
    return OPTIONS[name]


class set_options:
    """Change settings for the process (``set_options(plausibility="warn")``) or, used as a context manager,
    for the ``with`` block only (the previous values come back on exit, also after an error)."""

    def __init__(self, **settings: str) -> None:
        new = {name: _checked(name, value) for name, value in settings.items()}
        with _LOCK:
            self._old = {name: OPTIONS[name] for name in new}
            OPTIONS.update(new)

    def __enter__(self) -> set_options:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with _LOCK:
            OPTIONS.update(self._old)
