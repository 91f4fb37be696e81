"""The training run: the loop, losses, schedule, EMA, distributed setup, run folders, checkpoints, validation."""
