from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from downscale.bundle import FORMAT_VERSION, Bundle, BundleMeta, load_bundle, save_bundle
from downscale.bundle.meta import GridsMeta, ModelMeta, VariableMeta
from downscale.errors import BundleError
from downscale.recipe import LossSection


def _meta(name: str = "t") -> BundleMeta:
    """The smallest valid metadata: what the file-format tests need (the emulator tests train real bundles)."""
    return BundleMeta(
        name=name,
        framework="perfect_model",
        predictors=[VariableMeta.of("tas")],
        targets=[VariableMeta.of("tas")],
        grids=GridsMeta(coarse={}, fine={}),
        normaliser={},
        model=ModelMeta(type="simple_cnn", n_forcings=0, out_channels=1),
        heads=LossSection(),
    )


@pytest.fixture
def bundle_dir(tmp_path):
    b = Bundle(
        meta=_meta(),
        weights={"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)},
        arrays={"valid_mask": np.eye(3, dtype=bool), "static": np.full((1, 3, 3), 2.5, np.float32)},
    )
    path = tmp_path / "bundle"
    bid = save_bundle(path, b)
    return path, bid


def test_round_trip(bundle_dir):
    path, bid = bundle_dir
    b = load_bundle(path)
    assert b.id == bid and len(bid) == 16
    assert b.meta.format_version == FORMAT_VERSION and b.meta.name == "t"
    assert torch.equal(b.weights["w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert b.arrays["valid_mask"].dtype == bool and b.arrays["valid_mask"].sum() == 3
    assert float(b.arrays["static"][0, 1, 1]) == 2.5


def test_no_pickle_files(bundle_dir):
    path, _ = bundle_dir
    names = sorted(p.name for p in path.iterdir())
    assert names == ["MANIFEST.json", "arrays.safetensors", "bundle.json", "weights.safetensors"]


def test_optional_optimizer_state_round_trips_under_the_manifest(tmp_path):
    state = {"exp_avg/w": torch.full((2, 3), 0.5), "step/w": torch.tensor(7.0)}
    path = tmp_path / "with-optimizer"
    save_bundle(path, Bundle(meta=_meta(), weights={"w": torch.zeros(2, 3)}, optimizer=state))
    b = load_bundle(path)
    assert set(b.optimizer) == set(state) and torch.equal(b.optimizer["exp_avg/w"], state["exp_avg/w"])
    assert "optimizer.safetensors" in json.loads((path / "MANIFEST.json").read_text())
    from safetensors.torch import save_file

    save_file({**state, "step/w": torch.tensor(8.0)}, str(path / "optimizer.safetensors"))
    with pytest.raises(BundleError, match="optimizer.safetensors.*modified"):
        load_bundle(path)
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(BundleError, match="optimizer.safetensors.*missing"):
        load_bundle(path)


def test_edited_file_is_refused(bundle_dir):
    path, _ = bundle_dir
    meta = json.loads((path / "bundle.json").read_text())
    meta["name"] = "changed"
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="bundle.json.*modified"):
        load_bundle(path)


def test_missing_file_is_refused(bundle_dir):
    path, _ = bundle_dir
    (path / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="weights.safetensors.*missing"):
        load_bundle(path)


def test_newer_format_is_refused(bundle_dir):
    path, _ = bundle_dir
    meta = json.loads((path / "bundle.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (path / "bundle.json").write_text(json.dumps(meta))
    # re-sign the manifest so that only the version is wrong
    import hashlib

    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["bundle.json"] = hashlib.sha256((path / "bundle.json").read_bytes()).hexdigest()
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer downscale.*upgrade"):
        load_bundle(path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not an emulator bundle"):
        load_bundle(tmp_path / "nope")


def test_save_replaces_atomically(bundle_dir):
    path, first = bundle_dir
    b = load_bundle(path)
    b.meta.name = "second"
    second = save_bundle(path, b)
    assert second != first and load_bundle(path).meta.name == "second"
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())
