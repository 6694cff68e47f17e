"""Shared fixtures for the project's own tests."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def resnet18():
    """A random-init torchvision resnet18 in eval mode (seeded, same on every run)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def randomize_bn(module, seed: int = 0):
    """Give every BatchNorm random gamma, beta and running statistics (so branches differ per channel)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Keep ONNX exports and cached responses of the test run out of the user's ~/.cache."""
    import os

    old = os.environ.get("RESSTREAM_CACHE_DIR")
    os.environ["RESSTREAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("resstream_cache"))
    yield
    if old is None:
        os.environ.pop("RESSTREAM_CACHE_DIR", None)
    else:
        os.environ["RESSTREAM_CACHE_DIR"] = old
