"""Training: the one engine (:mod:`~.engine`), its step loader (:mod:`~.loader`), checkpoints, the plan a run
follows (:mod:`~.plan`: from scratch by default) and the ``train`` entry point (:mod:`~.run`)."""
