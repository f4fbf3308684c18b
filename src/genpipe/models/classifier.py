"""Small CNN classifier whose penultimate layer is the feature space of generation metrics
("Fréchet classifier distance", as TF-GAN and Fréchet LeNet distance do for MNIST)."""

from __future__ import annotations

import torch
from torch import nn

from genpipe.config import EvaluatorConfig
from genpipe.models.layout import channel_plan, spatial_plan


class Classifier(nn.Module):
    def __init__(
        self, config: EvaluatorConfig, image_shape: tuple[int, int, int], n_classes: int
    ) -> None:
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)
        self.n_classes = n_classes
        c, h, _ = self.image_shape
        sizes = spatial_plan(h)
        chans = channel_plan(32, len(sizes), cap=128)
        layers: list[nn.Module] = [
            nn.Conv2d(c, chans[0], 3, padding=1),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(),
        ]
        for i in range(1, len(sizes)):
            layers += [
                nn.Conv2d(chans[i - 1], chans[i], 3, stride=2, padding=1),
                nn.BatchNorm2d(chans[i]),
                nn.ReLU(),
            ]
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.embed = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(chans[-1] * sizes[-1] ** 2, config.feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(config.feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x in [0, 1] [N, C, H, W] -> penultimate features [N, feature_dim]."""
        return self.embed(self.trunk(x * 2 - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # logits [N, n_classes]


@torch.no_grad()
def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> float:
    """Top-1 accuracy in eval mode, batched."""
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        logits = model(images[i : i + batch_size])
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(len(labels), 1)
