"""Plain nn.Modules (VAE, GAN, evaluator classifier) and their self-describing file format."""

from genpipe.models.checkpoint import CheckpointError, load_model, save_model

__all__ = ["CheckpointError", "load_model", "save_model"]
