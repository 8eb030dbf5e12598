"""How the CLI shows the library's log records.

The library only logs (``logging.getLogger(__name__)`` under ``downscale``); the CLI decides how they look:
on a terminal, a Rich handler (colours, aligned levels, beside the progress bars); otherwise -- an HPC batch
job whose output goes to a file -- plain timestamped lines, one per record, never truncated.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console

__all__ = ["PlainFormatter", "setup_logging", "verbosity"]

_MARK = "_downscale_cli_handler"
_VERBOSE = [0]


def verbosity() -> int:
    """The ``-v`` count of this invocation (0: no tracebacks on the terminal, only one-line errors)."""
    return _VERBOSE[0]


class PlainFormatter(logging.Formatter):
    """``2026-12-07 17:01:02 epoch 3/50 ...``; warnings and errors say so: ``... warning: ...``."""

    def __init__(self) -> None:
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        text = f"{self.formatTime(record, self.datefmt)} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (a test runner swaps it between invocations)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # set by StreamHandler.__init__; the current stderr is used
        pass


def setup_logging(console: Console, *, verbose: int = 0, quiet: bool = False) -> None:
    """Route the ``downscale`` loggers to ``console`` (stderr): Rich on a terminal, plain lines otherwise.

    Replaces a handler installed by an earlier call (a test runner invokes the CLI many times in one process)."""
    _VERBOSE[0] = verbose
    logger = logging.getLogger("downscale")
    for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(old)
    handler: logging.Handler
    if console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(PlainFormatter())
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
