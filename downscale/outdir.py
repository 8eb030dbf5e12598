"""The output contract of every verb that writes a folder (``train``, ``transfer``, ``evaluate``, ``regrid``,
``apply``).

``-o PATH`` must name a new path, an empty folder, or a folder this tool wrote: one that holds its marker
``.downscale-output.json`` (verb, times, status) -- a finished bundle folder is known by its ``MANIFEST.json``
instead, as a bundle holds nothing its manifest does not list.  The same verb resumes its own
unfinished folder without a flag; any other folder of ours (finished, or of another verb) is replaced only
with ``--overwrite``.  ``apply`` *accumulates*: its folder (finished or not) takes further runs without a flag,
as batch downscaling adds projections to one folder, and a file is replaced only when an earlier apply run wrote
it under the same name.  Every other existing folder or file is refused before any work starts, and nothing of
the user's is ever moved or deleted.  The place is probed for writability first, and a lock file
``.downscale-output.lock`` (created with O_EXCL, holding pid and host) refuses a second run into the same
output.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from downscale.errors import DownscaleError

__all__ = ["LOCK", "MARKER", "OutputError", "OutputFolder", "check_output", "claim_output", "read_marker"]

logger = logging.getLogger(__name__)

MARKER = ".downscale-output.json"
LOCK = ".downscale-output.lock"
FIX = "choose a new folder, or --overwrite only for a folder downscale wrote"
_BUNDLE_FILES = {"bundle.json", "MANIFEST.json"}
#: what a bundle folder may hold (it is replaced whole when a bundle is written)
_BUNDLE_NAMES = {
    "bundle.json",
    "MANIFEST.json",
    "weights.safetensors",
    "arrays.safetensors",
    "optimizer.safetensors",
    "training_log.csv",
    "training_log.json",
    MARKER,
    LOCK,
}


class OutputError(DownscaleError, ValueError):
    """An output path that cannot be used (a user's folder or file, not writable, in use)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _tmp(name: str) -> bool:
    return name.startswith(".") and ".tmp-" in name


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of a folder this tool wrote; a finished bundle of an earlier version (no marker) counts as
    a finished train output; None for anything else."""
    folder = Path(folder)
    try:
        data = json.loads((folder / MARKER).read_text())
        if isinstance(data, dict) and data.get("tool") == "downscale":
            return data
    except (OSError, ValueError):
        pass
    if all((folder / n).is_file() for n in _BUNDLE_FILES):  # a finished bundle: its manifest is the marker
        import hashlib

        try:
            bundle_id = hashlib.sha256((folder / "MANIFEST.json").read_bytes()).hexdigest()[:16]
        except OSError:
            bundle_id = None
        return {"tool": "downscale", "verb": "train", "status": "complete", "bundle_id": bundle_id}
    if (folder / ".downscale-apply.log").is_file():  # an apply folder of an earlier version (no marker)
        return {"tool": "downscale", "verb": "apply", "status": "running"}
    return None


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not _tmp(p.name) and p.name != LOCK)


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f", ... ({len(names)} entries)" if len(names) > 3 else "")


def _probe(path: Path) -> None:
    """Create then remove a file in the nearest existing folder of ``path``."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise OutputError(
            "the output folder cannot be created: a file stands where a folder is needed", file=where, fix=FIX
        )
    probe = where / f".downscale-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(
            f"cannot write the output there ({exc.strerror or exc})",
            file=where,
            fix="choose a writable folder with -o (check permissions, read-only mounts and free space)",
        ) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_output(
    path: str | Path, verb: str, *, overwrite: bool = False, bundle: bool = False, accumulate: bool = False
) -> dict[str, Any] | None:
    """Refuse ``path`` unless the contract allows ``verb`` to write there (see the module); probe writability.
    ``accumulate``: a finished folder of the same verb is reopened without ``--overwrite`` (``apply``).
    Returns the marker of an existing folder of ours, else None.  Reads no data and changes nothing."""
    path = Path(path)
    marker: dict[str, Any] | None = None
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(
                "the output exists and is a file, not a folder downscale wrote; it is left untouched",
                file=path,
                fix=FIX,
            )
        names = _entries(path)
        if names:
            marker = read_marker(path)
            if marker is None:
                raise OutputError(
                    "the output folder exists and holds files downscale did not write; they are left untouched",
                    file=path,
                    found=_listing(names),
                    fix=FIX,
                )
            done = marker.get("status") == "complete"
            other = marker.get("verb")
            if not overwrite and (other != verb or (done and not accumulate)):
                what = "finished" if done else "unfinished"
                bid = f" (bundle {marker['bundle_id']})" if marker.get("bundle_id") else ""
                raise OutputError(
                    f"the output folder holds a {what} 'downscale {other}' output{bid}",
                    file=path,
                    found=f"{MARKER} written {marker.get('finished') or marker.get('started') or '?'}",
                    fix="choose a new folder, or --overwrite to replace it"
                    + ("" if done else f" (rerun 'downscale {other}' to resume it)"),
                )
            if overwrite and bundle:  # the folder is replaced whole: only files of ours may be in it
                foreign = [n for n in names if n not in _BUNDLE_NAMES]
                if foreign:
                    raise OutputError(
                        "the output folder holds files downscale did not write, which replacing it would delete",
                        file=path,
                        found=_listing(foreign),
                        fix="move them out of the folder first, or choose a new folder",
                    )
    _probe(path.parent if bundle else path)
    if bundle and path.exists():
        _probe(path)
    return marker


def check_companion(path: Path, *, suffixes: tuple[str, ...] = (), bundle: bool = False) -> None:
    """A folder beside the output that the verb writes and deletes (``<out>.ckpt``, ``.<out>.old``) must be
    absent or hold only what this tool writes there."""
    if not (path.exists() or path.is_symlink()):
        return
    if bundle:
        ok = path.is_dir() and read_marker(path) is not None
    else:
        ok = path.is_dir() and all(n.endswith(suffixes) for n in _entries(path))
    if not ok:
        raise OutputError(
            "a file or folder that downscale did not write is in the way of the run's working folder",
            file=path,
            fix="move or rename it, or choose another -o",
        )


# --------------------------------------------------------------------------------------------- the lock
def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        now = _proc_start(pid)
        if now is None or (start is not None and now != start):
            return False
    return True


class OutputFolder:
    """Claim an output for one run: check it, create it, lock it and mark it ours (``status: running``);
    :meth:`finish` marks it complete.  Used as a context manager; on an error, a folder this run created that
    holds nothing but its marker is removed again."""

    def __init__(
        self,
        path: str | Path,
        verb: str,
        *,
        overwrite: bool = False,
        bundle: bool = False,
        enabled: bool = True,
        accumulate: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.verb = verb
        self.overwrite = overwrite
        self.bundle = bundle
        self.enabled = enabled
        self.accumulate = accumulate
        self.warn = warn or logger.warning
        self.created = False
        self.created_at: str | None = None
        self.held = False
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": _proc_start(os.getpid()),
            "started": _now(),
            "verb": verb,
        }

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    def open(self) -> OutputFolder:
        if not self.enabled:
            return self
        previous = check_output(
            self.path, self.verb, overwrite=self.overwrite, bundle=self.bundle, accumulate=self.accumulate
        )
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self.created = True
        self._acquire()
        resumed = (
            previous is not None
            and previous.get("verb") == self.verb
            and (self.accumulate or previous.get("status") != "complete")
        )
        self.created_at = (previous or {}).get("created") if resumed else None
        self.write_marker("running", created=self.created_at)
        return self

    def _acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    other = json.loads(self.lock_path.read_text())
                except FileNotFoundError:
                    continue
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == self.info["host"] and not _alive(int(other.get("pid", -1)), other.get("start")):
                    self.warn(
                        f"taking over the stale lock {self.lock_path} (pid {other.get('pid')}, started "
                        f"{other.get('started', '?')}, is no longer running)"
                    )
                    with contextlib.suppress(FileNotFoundError):
                        self.lock_path.unlink()
                    continue
                raise OutputError(
                    f"another 'downscale {other.get('verb', '?')}' is writing to this output",
                    file=self.path,
                    found=f"pid {other.get('pid')} on host {other.get('host')}, started {other.get('started')}",
                    fix=f"wait for it to finish or choose another -o; if that run is dead, delete {self.lock_path}",
                ) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(self.info))
            self.held = True
            return
        raise OutputError("could not take the lock of the output", file=self.lock_path, fix="choose another -o")

    def write_marker(self, status: str, created: str | None = None, **extra: Any) -> None:
        from downscale import __version__

        if not self.enabled:
            return
        data = {
            "tool": "downscale",
            "version": __version__,
            "verb": self.verb,
            "status": status,
            "created": created or self.info["started"],
            "started": self.info["started"],
            "finished": _now() if status == "complete" else None,
            **extra,
        }
        tmp = self.path / f".{MARKER}.tmp-{socket.gethostname()}-{os.getpid()}"
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path / MARKER)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def finish(self, **extra: Any) -> None:
        """Mark the output complete.  A bundle folder (replaced whole when the bundle is written) keeps no
        marker: its ``MANIFEST.json`` marks it ours, and a bundle holds nothing its manifest does not list."""
        if self.bundle:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_marker("complete", created=self.created_at, **extra)

    def close(self, failed: bool = False) -> None:
        if self.held:
            try:
                if json.loads(self.lock_path.read_text()).get("pid") == os.getpid():
                    self.lock_path.unlink()
            except (OSError, ValueError):
                pass
            self.held = False
        if failed and self.created:
            with contextlib.suppress(OSError):
                if {p.name for p in self.path.iterdir()} <= {MARKER}:
                    (self.path / MARKER).unlink(missing_ok=True)
                    self.path.rmdir()

    def __enter__(self) -> OutputFolder:
        return self.open()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(failed=exc_type is not None)


@contextlib.contextmanager
def claim_output(
    path: str | Path, verb: str, *, overwrite: bool = False, bundle: bool = False, enabled: bool = True
) -> Iterator[OutputFolder]:
    """``with claim_output(out, "evaluate", overwrite=...) as output: ...; output.finish()``."""
    with OutputFolder(path, verb, overwrite=overwrite, bundle=bundle, enabled=enabled) as output:
        yield output
