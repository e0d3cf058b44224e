"""The README's "Bring your own network" example runs as written; a timm model converts."""

import ast
import re
from pathlib import Path

import pytest
import torch

import cenfusion

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Bring your own network", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under 'Bring your own network'"
    return match.group(1)


def test_readme_example_runs_and_prints_what_it_says():
    code = readme_example()
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    lines = code.splitlines()
    # every "# {...}" line is the value of the expression on the line before it
    shown = [(lines[i - 1], line[2:]) for i, line in enumerate(lines) if line.startswith("# {")]
    assert shown
    for expression, value in shown:
        assert eval(expression, namespace) == ast.literal_eval(value)
    assert torch.isfinite(namespace["loss"])
    namespace["loss"].backward()
    assert namespace["model"].network[4].weight.grad.shape == (2, 16)  # the private GroupNorm


def test_a_timm_resnet_converts_with_its_basic_block_sites():
    timm = pytest.importorskip(
        "timm",
        reason="timm is not installed: it needs torchvision, which is kept out of the "
        "environment (its wheels pull a CUDA build of torch); runs where timm is installed",
    )
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=5)
    model = cenfusion.convert(net, ("rgb", "depth"))
    assert model.exchange_norms == tuple(f"layer{i}.{j}.bn1" for i in range(1, 5) for j in range(2))
    model.eval()
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model({"rgb": x, "depth": x})
        expected = net(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "rgb": (2, 5),
        "depth": (2, 5),
        "ensemble": (2, 5),
    }
    for key in ("rgb", "depth", "ensemble"):  # identical inputs: each branch is the timm model
        torch.testing.assert_close(out[key], expected, atol=1e-5, rtol=1e-5)
