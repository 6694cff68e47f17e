"""Shared fixtures for the project's own tests."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Hypothesis profiles for the property tests (tests/test_properties.py).
# ``ci`` (the default): few, fixed examples, so every run draws the same networks and takes seconds.
# ``dev``: more examples, random, with the example database, for bug hunting:
#     HYPOTHESIS_PROFILE=dev python -m pytest tests/test_properties.py
settings.register_profile("ci", max_examples=20, derandomize=True, deadline=None, database=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
