"""The output contract of train, transfer, evaluate, regrid and apply (downscale.outdir): a user's folder or file is
refused before any work with one line and left byte-identical; our own folder resumes or is replaced with
--overwrite; a second run into a locked output is refused; a read-only place is refused before the work."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from downscale.cli.main import app
from downscale.outdir import LOCK, MARKER, OutputError, OutputFolder, check_output

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "perfect-model-iberia.yaml"
TRANSFER = ROOT / "recipes" / "transfer-eobs-k30.yaml"
IBERIA = ROOT / "examples" / "data" / "iberia"
runner = CliRunner()


def invoke(*args, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def _user_folder(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    files = {"notes.txt": b"my notes", "sub/data.nc": b"\x89HDF precious"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _commands(out: Path) -> dict[str, list]:
    grid = next((IBERIA / "gcm").glob("tas_*.nc")) if (IBERIA / "gcm").is_dir() else RECIPE
    inputs = sorted((IBERIA / "cordex").glob("*_historical_*.nc"))[:1] or [RECIPE]
    return {
        "train": ["train", RECIPE, "-o", out, "--no-progress"],
        "transfer": ["transfer", ROOT / "no-such-bundle", TRANSFER, "-o", out, "--no-progress"],
        "evaluate": ["evaluate", ROOT / "no-such-config.yaml", "-o", out, "--no-progress"],
        "regrid": ["regrid", *inputs, "--grid", grid, "-o", out],
        "apply": ["apply", ROOT / "no-such-bundle", *inputs, "-o", out, "--no-progress"],
    }


@pytest.mark.parametrize("verb", ["train", "transfer", "evaluate", "regrid", "apply"])
def test_a_users_folder_is_refused_before_any_work_and_left_untouched(tmp_path, verb):
    folder, files = _user_folder(tmp_path)
    for flags in _flags(verb):
        text = invoke(*_commands(folder)[verb], *flags, code=2)
        assert text.startswith("error:") and str(folder) in text, text
        assert "holds files downscale did not write" in text and "notes.txt" in text, text
        assert "choose a new folder, or --overwrite only for a folder downscale wrote" in text, text
        assert _snapshot(folder) == files
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "sub"]
    assert not list(tmp_path.glob(".*"))  # nothing hidden beside it either


def _flags(verb: str) -> tuple[list[str], ...]:
    return ([],) if verb == "apply" else ([], ["--overwrite"])  # apply accumulates: it has no --overwrite


@pytest.mark.parametrize("verb", ["train", "transfer", "evaluate", "regrid", "apply"])
def test_an_existing_file_is_refused_and_not_moved(tmp_path, verb):
    path = tmp_path / "result.nc"
    path.write_bytes(b"precious")
    for flags in _flags(verb):
        text = invoke(*_commands(path)[verb], *flags, code=2)
        assert f"error: {path}: the output exists and is a file" in text, text
        assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.nc"]


def test_a_foreign_checkpoint_folder_beside_the_bundle_is_refused(tmp_path):
    ckpt = tmp_path / "b.ckpt"
    ckpt.mkdir()
    (ckpt / "thesis.tex").write_text("x")
    text = invoke("train", RECIPE, "-o", tmp_path / "b", "--no-progress", code=2)
    assert str(ckpt) in text and "did not write" in text
    assert (ckpt / "thesis.tex").read_text() == "x" and not (tmp_path / "b").exists()


def test_our_folder_resumes_with_the_same_verb_and_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "report"
    with OutputFolder(out, "evaluate") as output:  # an interrupted evaluate: marker 'running', a figure
        (out / "figures").mkdir()
        (out / "figures" / "a__b__tas__qq.png").write_bytes(b"png")
    assert json.loads((out / MARKER).read_text())["status"] == "running"
    assert not (out / LOCK).exists()
    assert check_output(out, "evaluate")["verb"] == "evaluate"  # the same verb resumes, no flag
    with pytest.raises(OutputError, match="unfinished 'downscale evaluate' output"):
        check_output(out, "regrid")  # another verb: only with --overwrite
    check_output(out, "regrid", overwrite=True)
    with OutputFolder(out, "evaluate") as output:
        output.finish(files=["metrics.csv"])
    marker = json.loads((out / MARKER).read_text())
    assert marker["status"] == "complete" and marker["finished"] and marker["tool"] == "downscale"
    with pytest.raises(OutputError, match="finished 'downscale evaluate' output.*--overwrite to replace it"):
        check_output(out, "evaluate")
    assert check_output(out, "evaluate", overwrite=True)["status"] == "complete"


def test_overwrite_of_a_bundle_folder_refuses_foreign_files_inside(tmp_path):
    import hashlib

    out = tmp_path / "b"
    with OutputFolder(out, "train", bundle=True) as output:  # what save_bundle then writes in its place
        (out / "bundle.json").write_text("{}")
        (out / "MANIFEST.json").write_text("{}")
        (out / MARKER).unlink()
        output.finish()
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.json", "bundle.json"]
    bid = hashlib.sha256(b"{}").hexdigest()[:16]
    with pytest.raises(OutputError, match=rf"finished 'downscale train' output \(bundle {bid}\)"):
        check_output(out, "train", bundle=True)
    check_output(out, "train", overwrite=True, bundle=True)
    (out / "my-notes.txt").write_text("x")
    with pytest.raises(OutputError, match="replacing it would delete.*my-notes.txt"):
        check_output(out, "train", overwrite=True, bundle=True)


def test_an_empty_folder_is_fine_and_a_failed_run_leaves_no_folder_it_made(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, "train", bundle=True) is None
    new = tmp_path / "new"
    with pytest.raises(RuntimeError), OutputFolder(new, "evaluate"):
        assert (new / LOCK).exists()
        raise RuntimeError("boom")
    assert not new.exists()


def test_a_second_run_into_a_locked_output_is_refused_and_a_dead_lock_taken_over(tmp_path):
    out = tmp_path / "report"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with OutputFolder(out, "evaluate"):
            lock = json.loads((out / LOCK).read_text())
            assert lock["pid"] == os.getpid()
            (out / LOCK).write_text(json.dumps({**lock, "pid": other.pid, "start": None}))
            config = tmp_path / "missing.yaml"
            text = invoke("evaluate", config, "-o", out, "--no-progress", code=2)
            assert f"error: {out}: another 'downscale evaluate' is writing to this output" in text, text
            assert f"pid {other.pid}" in text and "wait for it to finish" in text
    finally:
        other.kill()
        other.wait()
    # the holder died: the next run takes the stale lock over
    (out / LOCK).write_text(json.dumps({**lock, "pid": other.pid, "start": None}))
    with OutputFolder(out, "evaluate"):
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    assert not (out / LOCK).exists()


def test_two_concurrent_cli_runs_the_second_is_refused(tmp_path):
    """A real second process while the first holds the output."""
    out = tmp_path / "report"
    code = (
        "import sys, time; from downscale.outdir import OutputFolder\n"
        f"with OutputFolder({str(out)!r}, 'regrid'):\n    print('held', flush=True); time.sleep(30)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "held"
        text = invoke("regrid", RECIPE, "--grid", RECIPE, "-o", out, code=2)
        assert "another 'downscale regrid' is writing to this output" in text, text
    finally:
        first.kill()
        first.wait()


def test_a_read_only_output_is_refused_before_the_work(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kw):  # root ignores chmod: a read-only mount, simulated
        if ".downscale-probe-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", read_only)
    for verb, args in _commands(folder / "out").items():
        text = invoke(*args, code=2)
        assert f"error: {folder}: cannot write the output there (Read-only file system)" in text, (verb, text)
        assert "choose a writable folder" in text
    assert list(folder.iterdir()) == []


def test_a_read_only_folder_by_permissions(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root, where chmod 0o555 does not stop writes; covered by the patched EROFS test")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        text = invoke("evaluate", tmp_path / "x.yaml", "-o", folder / "out", "--no-progress", code=2)
        assert "cannot write the output there" in text
    finally:
        folder.chmod(0o755)
