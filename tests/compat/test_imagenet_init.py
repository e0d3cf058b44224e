"""ImageNet initialisation end to end: a torchvision-format state dict loads into every branch,
and with one modality and exchange off the CEN ResNet computes what a plain ResNet computes.

The plain ResNet-50 is written here, from torch.nn only, with torchvision's module names, so the
check does not lean on cenfusion's own architecture code.
"""

import torch
from torch import nn

import cenfusion


class PlainBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class PlainResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), 1
        ):
            stride = 1 if index == 1 else 2
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
            layers = [PlainBottleneck(inplanes, planes, stride, downsample)]
            layers += [PlainBottleneck(planes * 4, planes, 1, None) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            inplanes = planes * 4
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def randomised_torchvision_state(seed=0):
    """torchvision's key names and shapes, random values (nothing is downloaded)."""
    torch.manual_seed(seed)
    reference = PlainResNet50()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return reference


def test_torchvision_weights_load_into_every_modality_and_match_a_plain_resnet(tmp_path):
    reference = randomised_torchvision_state()
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(reference.state_dict(), path)

    two = cenfusion.create_backbone("resnet50", ("rgb", "depth"), pretrained=str(path))
    for key, value in reference.state_dict().items():
        if key.startswith("fc."):
            continue
        ours = two.state_dict()[key]
        if ours.dim() == value.dim() + 1:  # a private norm: one row per modality
            assert all(torch.equal(ours[m], value) for m in range(2)), key
        else:
            assert torch.equal(ours, value), key

    one = cenfusion.create_backbone("resnet50", ("rgb",), exchange=False, pretrained=str(path))
    x = torch.randn(2, 3, 96, 96)
    for training in (False, True):
        one.train(training)
        reference.train(training)
        with torch.no_grad():
            for got, expected in zip(one({"rgb": x}), reference(x), strict=True):
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
