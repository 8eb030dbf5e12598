"""Skill scores and baselines shared by the test-period skill table of ``downscale train`` and by
``downscale evaluate``: pure metric functions (:mod:`~.metrics`), the simple baselines every table shows
(:mod:`~.baselines`: bilinear, bilinear with per-cell bias correction, quantile mapping) and the skill table
(:mod:`~.table`)."""
