"""The ``downscale`` command line (installed as ``downscale.cli``)."""
