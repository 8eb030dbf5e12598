"""Training: losses, the one engine, and the ``train`` entry point."""
