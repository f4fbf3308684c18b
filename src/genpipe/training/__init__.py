"""Training: device/precision selection, the epoch loop, training checkpoints and resume."""
