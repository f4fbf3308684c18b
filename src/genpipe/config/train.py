"""Config of the training stages: shared `train`, per-model `vae` and `gan`, and `evaluator`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from genpipe.config.base import Section


class TrainConfig(Section):
    """`train:` settings shared by every trained model."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    seed: int = 0
    batch_size: PositiveInt = 128
    checkpoint_every: PositiveInt = 5
    resume: bool = False
    num_workers: int = Field(default=2, ge=0)
    max_device_bytes: PositiveInt = 2_000_000_000
    log_images_every: PositiveInt = 1
    # CPU threads for torch; 0 = auto: 1 for images <= 16x16 (overhead-bound ops gain nothing
    # from threads and suffer badly on a busy machine), torch's default otherwise.
    cpu_threads: int = Field(default=0, ge=0)


class LearningRates(Section):
    generator: PositiveFloat = 2e-4
    discriminator: PositiveFloat = 2e-4


class VAEConfig(Section):
    """`vae:` convolutional VAE."""

    epochs: PositiveInt = 60
    lr: PositiveFloat = 1e-3
    latent_dim: PositiveInt = 16
    base_channels: PositiveInt = 32
    beta: float = Field(default=1.0, ge=0)
    kl_warmup_epochs: int = Field(default=10, ge=0)
    likelihood: Literal["bernoulli", "continuous_bernoulli", "gaussian"] = "bernoulli"


class GANConfig(Section):
    """`gan:` DCGAN-style generator and discriminator."""

    epochs: PositiveInt = 100
    lr: LearningRates = LearningRates()
    betas: tuple[float, float] = (0.5, 0.999)
    latent_dim: PositiveInt = 32
    base_channels: PositiveInt = 32
    loss: Literal["non_saturating", "hinge"] = "hinge"
    spectral_norm: bool = True
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    d_steps: PositiveInt = 1
    snapshots: PositiveInt = 5


class EvaluatorConfig(Section):
    """`evaluator:` the small CNN classifier whose features define the generation-metric space."""

    epochs: PositiveInt = 30
    lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 128
    seed: int = 0
    feature_dim: PositiveInt = 64
    min_test_accuracy: float = Field(default=0.97, ge=0, le=1)
    augment: bool = True  # random 1-pixel shifts: small train splits (digits) overfit without them
