"""The training run: config, losses, loop, checkpoints."""
