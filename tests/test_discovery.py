"""Discovery: block counts and site shapes for every architecture the issue names."""

from __future__ import annotations

import pytest
import torch
import torchvision

from resstream_assert.discovery import discover
from resstream_assert.discovery.residual_map import SITES
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.errors import DiscoveryError
from resstream_assert import load_model
from tests.cifar_user_model import resnet20

EXPECTED = {  # arch: (blocks, channels of first block, first block has a projection shortcut)
    "resnet18": (8, 64, False), "resnet34": (16, 64, False), "resnet50": (16, 256, True),
    "resnet101": (33, 256, True), "resnet152": (50, 256, True), "wide_resnet50_2": (16, 256, True),
    "resnext50_32x4d": (16, 256, True), "convnext_tiny": (18, 96, False),
}


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_torchvision_block_counts(arch):
    n, ch0, proj0 = EXPECTED[arch]
    rmap = discover_torch(getattr(torchvision.models, arch)(), 64)
    assert len(rmap) == n
    assert rmap[0].channels == ch0 and rmap[0].projection == proj0
    assert all(set(b.sites) == set(SITES) for b in rmap)
    assert all(b.branch_gain is not None and b.branch_gain.shape == (b.channels,) for b in rmap)
    # Spatial sizes only shrink along the stream.
    sizes = [b.spatial[0] for b in rmap]
    assert sizes == sorted(sizes, reverse=True)


def test_resnet18_sites_are_the_papers_modules():
    rmap = discover_torch(torchvision.models.resnet18(), 224)
    b = rmap["layer2.0"]
    assert b.sites == {"resid_pre": "layer1.1.relu_1", "skip_out": "layer2.0.downsample.1",
                       "branch_out": "layer2.0.bn2", "resid_sum": "layer2.0.add", "resid_post": "layer2.0.relu_1"}
    assert (b.channels, b.spatial, b.gain_kind, b.gain_source) == (128, (28, 28), "bn", "layer2.0.bn2")
    assert rmap["layer2.1"].sites["skip_out"] == "layer2.0.relu_1" and not rmap["layer2.1"].projection
    assert [b.spatial for b in rmap][-1] == (7, 7)


def test_bottleneck_gain_is_bn3_and_conv3():
    b = discover_torch(torchvision.models.resnet50(), 64)[0]
    assert (b.gain_source, b.conv_source) == ("layer1.0.bn3", "layer1.0.conv3")
    assert b.sites["skip_out"] == "layer1.0.downsample.1"


def test_convnext_layer_scale_and_no_post_activation():
    m = torchvision.models.convnext_tiny()
    rmap = discover_torch(m, 64)
    b = rmap[0]
    assert b.gain_kind == "layer_scale" and b.gain_source == "features.1.0.layer_scale"
    assert not b.post_activation and b.sites["resid_post"] == b.sites["resid_sum"]
    assert torch.allclose(torch.as_tensor(b.branch_gain), m.features[1][0].layer_scale.detach().abs().flatten().double())


def test_cifar_option_a_shortcut():
    rmap = discover_torch(resnet20(), 32)
    assert len(rmap) == 9
    assert [b.projection for b in rmap] == [False, False, False, True, False, False, True, False, False]
    assert rmap[3].channels == 32 and rmap[3].spatial == (16, 16)
    assert rmap[3].gain_source == "layer2.0.bn2"


def test_timm_resnet_when_installed():
    timm = pytest.importorskip("timm")
    rmap = discover_torch(timm.create_model("resnet18", pretrained=False), 64)
    assert len(rmap) == 8 and rmap[0].gain_source == "layer1.0.bn2"
    assert len(discover_torch(timm.create_model("resnet50", pretrained=False), 64)) == 16


@pytest.mark.parametrize("arch", ["vgg11", "alexnet"])
def test_no_residual_block_is_a_clear_error(arch):
    with pytest.raises(DiscoveryError, match="No residual block found.*skip connections"):
        discover(load_model(f"torchvision:{arch}"))


def test_untraceable_model_is_a_clear_error():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) + x if x.sum() > 0 else x

    with pytest.raises(DiscoveryError, match="could not trace"):
        discover_torch(Branchy())


def test_table_and_dict_name_every_block(resnet18):
    rmap = discover_torch(resnet18, 224)
    text = rmap.table()
    assert all(b.name in text for b in rmap)
    d = rmap.to_dict()
    assert d["blocks"][2]["sites"]["skip_out"] == "layer2.0.downsample.1"
    assert d["blocks"][2]["branch_gain"] == {"kind": "bn", "source": "layer2.0.bn2", "proxy": False}


def test_discovery_leaves_the_users_model_as_it_was():
    """discover() reads the model in eval mode but gives every submodule its own mode back, and no forward
    pass it runs (shapes) touches BatchNorm statistics."""
    torch.manual_seed(0)
    m = resnet20().train()
    m.layer2.eval()
    modes = {name: x.training for name, x in m.named_modules()}
    stats = {k: v.clone() for k, v in m.state_dict().items()}
    assert len(discover(m, 32)) == 9
    assert {name: x.training for name, x in m.named_modules()} == modes
    assert all(torch.equal(stats[k], v) for k, v in m.state_dict().items())


def test_identity_modules_are_identity_shortcuts():
    """nn.Identity(), an empty nn.Sequential() and a lambda returning x are identity shortcuts; a conv+bn
    downsample and option-A zero padding are projections."""
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, shortcut):
            super().__init__()
            self.conv, self.bn, self.shortcut = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), shortcut

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)) + self.shortcut(x))

    class Lambda(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    shortcuts = {"identity": nn.Identity(), "empty": nn.Sequential(), "lambda": Lambda(lambda x: x),
                 "dropout": nn.Dropout(0.1), "conv": nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)),
                 "pad": Lambda(lambda x: F.pad(x[:, :2], (0, 0, 0, 0, 1, 1)))}
    got = {name: discover(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Block(s)), 16)[0].projection
           for name, s in shortcuts.items()}
    assert got == {"identity": False, "empty": False, "lambda": False, "dropout": False, "conv": True, "pad": True}
