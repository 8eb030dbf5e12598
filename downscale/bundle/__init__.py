"""The emulator bundle: safetensors weights and arrays plus typed JSON metadata, loaded without pickle.

:mod:`~.store` writes and verifies the folder; :mod:`~.meta` is the schema of ``bundle.json``.
"""

from downscale.bundle.meta import FORMAT_VERSION, BundleMeta, parse_meta
from downscale.bundle.store import Bundle, load_bundle, save_bundle

__all__ = ["FORMAT_VERSION", "Bundle", "BundleMeta", "load_bundle", "parse_meta", "save_bundle"]
