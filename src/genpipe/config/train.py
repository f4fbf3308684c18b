"""Config of the training stages: shared `train` and `runtime`, per-family `vae`, `gan`, `evaluator`.

`train` holds what shapes a trained model (so dvc.yaml lists its keys as the trainings' params);
`runtime` holds how and where the computation runs, which no stage result depends on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from genpipe.config.base import Section


class TrainConfig(Section):
    """`train:` settings that shape every VAE and GAN run."""

    seed: int
    batch_size: PositiveInt


class DistributedConfig(Section):
    """`runtime.distributed:` data-parallel training through torchrun (1 x 1: one process)."""

    nproc_per_node: PositiveInt  # processes per machine (one per GPU on CUDA)
    nnodes: PositiveInt  # machines; node 0 runs `dvc repro` and writes the outputs
    rdzv_endpoint: str | None = Field(pattern=r"^[^:\s]+:\d+$")  # node 0's host:port
    timeout_seconds: PositiveFloat  # a rank silent this long ends the job


class RuntimeConfig(Section):
    """`runtime:` where and how the stages compute; changing these reruns no stage."""

    device: Literal["auto", "cpu", "cuda", "mps"]
    precision: Literal["auto", "fp32", "bf16"]
    compile: bool
    num_workers: int = Field(ge=0)
    max_device_bytes: PositiveInt
    cpu_threads: int = Field(ge=0)  # torch's CPU threads per stage; 0 = auto (genpipe.cpu)
    checkpoint_every: PositiveInt
    log_images_every: PositiveInt
    distributed: DistributedConfig


class LearningRates(Section):
    generator: PositiveFloat
    discriminator: PositiveFloat


class VAEConfig(Section):
    """`vae:` convolutional VAE."""

    epochs: PositiveInt
    lr: PositiveFloat
    latent_dim: PositiveInt
    base_channels: PositiveInt
    beta: float = Field(ge=0)
    kl_warmup_epochs: int = Field(ge=0)
    likelihood: Literal["bernoulli", "continuous_bernoulli", "gaussian"]
    batch_size: PositiveInt | None  # None: train.batch_size
    # sampling prior: N(0, I), or a Gaussian mixture fitted to the training posterior means at export
    prior: Literal["standard", "gmm"]
    prior_components: PositiveInt  # mixture components for prior: gmm


class GANConfig(Section):
    """`gan:` DCGAN-style generator and discriminator."""

    epochs: PositiveInt
    lr: LearningRates
    betas: tuple[float, float]
    latent_dim: PositiveInt
    base_channels: PositiveInt
    loss: Literal["non_saturating", "hinge"]
    spectral_norm: bool
    ema_decay: float = Field(ge=0, lt=1)
    d_steps: PositiveInt
    snapshots: PositiveInt
    batch_size: PositiveInt | None  # None: train.batch_size


class EvaluatorConfig(Section):
    """`evaluator:` the small CNN classifier whose features define the generation-metric space."""

    epochs: PositiveInt
    lr: PositiveFloat
    batch_size: PositiveInt
    seed: int
    feature_dim: PositiveInt
    min_test_accuracy: float = Field(ge=0, le=1)
    augment: bool  # random 1-pixel shifts: small train splits (digits) overfit without them
