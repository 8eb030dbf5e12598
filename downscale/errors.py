"""Errors raised by ``downscale``.

Every error is one line that names the file, the variable, what was found, what
was expected and how to fix it.  They subclass built-in exceptions so that
callers can catch ``ValueError`` without importing this module; the CLI turns
any :class:`DownscaleError` into a clean one-line message instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike

__all__ = [
    "BundleError",
    "CalendarError",
    "DataError",
    "DownscaleError",
    "GridMismatchError",
    "MissingVariableError",
    "NotAvailableError",
    "RecipeError",
    "RegridError",
    "UnitsError",
    "UnknownNameError",
    "closest",
]


class DownscaleError(Exception):
    """Base class: a one-line, user-facing message.

    Parameters are optional pieces that are assembled in a fixed order:
    ``<file>: variable '<variable>': <message> (found <found>; expected <expected>). Fix: <fix>``
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | PathLike | None = None,
        variable: str | None = None,
        found: object = None,
        expected: object = None,
        fix: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.variable = variable
        self.found = found
        self.expected = expected
        self.fix = fix
        self.message = message
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:")
        if self.variable:
            parts.append(f"variable '{self.variable}':")
        parts.append(self.message)
        detail = []
        if self.found is not None:
            detail.append(f"found {self.found}")
        if self.expected is not None:
            detail.append(f"expected {self.expected}")
        text = " ".join(parts)
        if detail:
            text += " (" + "; ".join(detail) + ")"
        if self.fix:
            text += f". Fix: {self.fix}"
        # one line, always
        return " ".join(text.split())


class DataError(DownscaleError, ValueError):
    """Input data is unusable: empty glob, corrupt file, NaNs where not allowed..."""


class MissingVariableError(DataError):
    """A variable (or pressure level) asked for is not in the input."""


class UnitsError(DataError):
    """Units are unknown or cannot be converted to the canonical ones."""


class CalendarError(DataError):
    """Calendars disagree, or a period does not exist in a calendar."""


class GridMismatchError(DataError):
    """A grid is not the one expected (e.g. not the bundle's grid)."""


class RegridError(DownscaleError, ValueError):
    """A regridding method is not available with the installed backends."""


class RecipeError(DownscaleError, ValueError):
    """A recipe file is invalid."""


class BundleError(DownscaleError, ValueError):
    """An emulator bundle is missing, tampered with, or too new."""


class NotAvailableError(DownscaleError, NotImplementedError):
    """A verb or feature that is not built yet."""


def closest(name: str, names: Iterable[str]) -> str | None:
    """The closest valid name to ``name``, or ``None`` when nothing is near."""
    matches = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return matches[0] if matches else None


class UnknownNameError(DownscaleError, ValueError):
    """A name (model, loss, regridder, ...) that is not registered."""

    def __init__(self, kind: str, name: str, names: Iterable[str], *, file: str | None = None) -> None:
        valid = sorted(names)
        near = closest(name, valid)
        fix = f"did you mean '{near}'?" if near else "use one of the valid names"
        super().__init__(
            f"unknown {kind} '{name}'; valid: {', '.join(valid) if valid else '(none registered)'}",
            file=file,
            fix=fix,
        )
        self.kind = kind
        self.name = name
        self.names = valid
