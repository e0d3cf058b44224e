"""Training with the disjoint L1 term drives penalised scaling factors below the threshold."""

import torch
from torch import nn

from cenfusion.nn import (
    Ensemble,
    ModalityBatchNorm2d,
    exchange_mask,
    exchange_sites,
    sparsity_penalty,
    stack_modalities,
)

THRESHOLD = 2e-2


class TinyCEN(nn.Module):
    """Shared convs, private norms, one exchange site, per-modality heads and an ensemble."""

    def __init__(self, num_modalities: int = 2, channels: int = 8) -> None:
        super().__init__()
        self.num_modalities = num_modalities
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = ModalityBatchNorm2d(channels, num_modalities)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = ModalityBatchNorm2d(channels, num_modalities, exchange_threshold=THRESHOLD)
        self.head = nn.Conv2d(channels, 1, 1)
        self.ensemble = Ensemble(num_modalities)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.head(torch.relu(self.bn2(self.conv2(x))))


def test_disjoint_l1_makes_penalised_channels_exchange():
    torch.manual_seed(0)
    model = TinyCEN()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    assert not exchange_mask(model.bn2.weight, THRESHOLD).any()
    for _ in range(150):
        rgb, depth = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
        target = (rgb.mean(1, keepdim=True) + depth[:, :1]) / 2
        outputs = model(stack_modalities([rgb, depth], ["rgb", "depth"]))
        loss = sum(
            nn.functional.mse_loss(out, target) for out in outputs.split(rgb.shape[0])
        ) + sparsity_penalty(model, 2e-2, "disjoint")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    gamma = model.bn2.weight.detach().abs()
    exchanged = exchange_mask(model.bn2.weight, THRESHOLD)
    # the penalised halves (rgb: channels 0-3, depth: 4-7) collapse below theta ...
    assert (gamma[0, :4] < THRESHOLD).sum() >= 3 and (gamma[1, 4:] < THRESHOLD).sum() >= 3
    # ... the free halves do not, so every exchanged channel has a live source
    assert not exchanged[0, 4:].any() and not exchanged[1, :4].any()
    assert [name for name, _ in exchange_sites(model)] == ["bn2"]
    # and exchange really changes what the network computes
    model.eval()
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        exchanged_out = model(x)
        model.bn2.exchange_threshold = None
        plain_out = model(x)
    assert not torch.allclose(exchanged_out, plain_out)
