"""The project's own pytest configuration: hypothesis profiles and the fixtures its tests share.

Hypothesis profiles for the property tests (tests/test_properties.py):
``ci`` (the default): few, fixed examples, so every run draws the same networks and takes seconds.
``dev``: more examples, random, with the example database, for bug hunting::

    HYPOTHESIS_PROFILE=dev python -m pytest tests/test_properties.py
"""

from __future__ import annotations

import importlib
import os
from typing import Callable

import pytest

pytest_plugins = ["pytester"]

try:  # the built-in suite (pytest --pyargs resstream_assert.suite) runs from here without the test extra
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    settings.register_profile("ci", max_examples=20, derandomize=True, deadline=None, database=None,
                              print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=200, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def resnet18():
    """A random-init torchvision resnet18 in eval mode (seeded, same on every run)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="session")
def random_weights_spec(tmp_path_factory) -> Callable[[str, int], str]:
    """Factory: ``make("tests.cifar_user_model:resnet20", seed)`` saves that factory's model
    (initialised under ``torch.manual_seed(0)``, its BatchNorms randomised with ``seed``) as a
    state dict, once per session, and returns the spec ``FACTORY@PATH``."""
    made: dict[tuple[str, int], str] = {}

    def make(factory: str, seed: int = 0) -> str:
        if (factory, seed) not in made:
            import torch

            from resstream_assert.loading.random_weights import randomize_bn

            module_name, _, attr = factory.partition(":")
            torch.manual_seed(0)
            model = getattr(importlib.import_module(module_name), attr)()
            path = tmp_path_factory.mktemp("weights") / f"{attr}-bn{seed}.pth"
            torch.save(randomize_bn(model, seed=seed).state_dict(), path)
            made[(factory, seed)] = f"{factory}@{path}"
        return made[(factory, seed)]

    return make
