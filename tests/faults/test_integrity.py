"""A bundle's manifest covers every file and is validated; a bundle.json that does not validate is refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from typer.testing import CliRunner

import downscale
from downscale.cli.main import app
from downscale.errors import BundleError

INPUT = "examples/data/iberia/cmip5"


def _copy(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _manifest(path):
    return json.loads((path / "MANIFEST.json").read_text())


def _resign(path, name):
    m = _manifest(path)
    m[name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    (path / "MANIFEST.json").write_text(json.dumps(m))


def _drop_weights(m):
    m.pop("weights.safetensors")
    return m


def _ghost(m):
    m["notes.txt"] = "0" * 64
    return m


CASES = {
    "list": (lambda m: [], "not a mapping"),
    "empty": (lambda m: {}, "no entry for bundle.json"),
    "no-weights-entry": (_drop_weights, "no entry for weights.safetensors"),
    "bad-checksum": (lambda m: {**m, "bundle.json": "xyz"}, "does not validate"),
    "listed-missing": (_ghost, "notes.txt"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_manifest_is_one_line(tmp_path, tiny_bundle, root, case):
    edit, part = CASES[case]
    path = _copy(tiny_bundle, tmp_path)
    (path / "MANIFEST.json").write_text(json.dumps(edit(_manifest(path))))
    with pytest.raises(BundleError) as exc:
        downscale.load(path)
    assert part in str(exc.value) and "\n" not in str(exc.value) and "Fix:" in str(exc.value)
    runner = CliRunner()
    for args in (["describe", str(path)], ["apply", str(path), str(root / INPUT), "-o", str(tmp_path / "o")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and part in result.output and "Traceback" not in result.output


def test_unlisted_file_is_refused(tmp_path, tiny_bundle):
    path = _copy(tiny_bundle, tmp_path)
    (path / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(BundleError, match="does not list.*extra.safetensors"):
        downscale.load(path)


def test_training_records_are_allowed(tiny_bundle):
    assert (tiny_bundle / "training_log.csv").is_file()
    downscale.load(tiny_bundle)


def test_resigned_meta_that_does_not_validate_is_refused(tmp_path, tiny_bundle):
    path = _copy(tiny_bundle, tmp_path)
    meta = json.loads((path / "bundle.json").read_text())
    meta["model"]["n_forcings"] = -1
    meta["unexpected"] = 1
    (path / "bundle.json").write_text(json.dumps(meta))
    _resign(path, "bundle.json")
    with pytest.raises(BundleError) as exc:
        downscale.load(path)
    assert "does not validate" in str(exc.value) and "\n" not in str(exc.value)
    result = CliRunner().invoke(app, ["describe", str(path)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------- apply's work chunks
APPLY_INPUTS = [
    "examples/data/iberia/cmip5/tas_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc",
    "examples/data/iberia/cmip5/pr_day_CNRM-CM5_historical_r1i1p1_DJF1983-2002.nc",
]


class _Stop(Exception):
    pass


def test_edited_or_truncated_chunks_are_recomputed(tmp_path, tiny_bundle, root):
    import numpy as np
    import xarray as xr

    from downscale.apply import downscale_files

    inputs = [root / p for p in APPLY_INPUTS]
    ref = downscale_files(tiny_bundle, inputs, tmp_path / "ref", chunk_days=400)
    done = []

    def stop_after_three(label, start, stop):
        done.append(start)
        if len(done) == 3:
            raise _Stop

    out = tmp_path / "out"
    with pytest.raises(_Stop):
        downscale_files(tiny_bundle, inputs, out, chunk_days=400, on_chunk=stop_after_three)
    chunks = sorted((out / ".downscale-work").rglob("c*.npy"))
    assert len(chunks) == 3
    edited, truncated, kept = chunks
    data = bytearray(edited.read_bytes())
    data[-8:] = b"\x00\x00\x80\x7f" * 2  # two values become +inf: the shape still matches
    edited.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    warnings = []
    result = downscale_files(tiny_bundle, inputs, out, chunk_days=400, warn=warnings.append)
    assert result.reused == 1 and result.computed >= 2 and result.violations == 0
    assert any(edited.name in w and "checksum" in w for w in warnings), warnings
    assert any(truncated.name in w and "recomputing" in w for w in warnings), warnings
    assert not any(kept.name in w for w in warnings)
    for a, b in zip(sorted(ref), sorted(result), strict=True):
        with xr.open_dataset(a) as da, xr.open_dataset(b) as db:
            name = a.name.split("_")[0]
            np.testing.assert_array_equal(da[name].values, db[name].values)
            assert db.attrs["downscale_sanity"].startswith("passed")
