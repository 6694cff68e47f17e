"""Feature visualization beyond the papers' recipe: a rectified unit that is zero on the grey start
(pass_relu), the receptive-field crop (exact: same objective and gradient), and the early stop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import resstream_assert.stimuli.featviz as fv
from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.stimuli import featviz_chunk as fc
from resstream_assert.stimuli.featviz_crop import block_window
from resstream_assert.stimuli.featviz_graph import pass_relu, site_graph
from resstream_assert.stimuli.featviz_param import COLOR_CORRELATION, draws, freq_scale
from resstream_assert.capture.featviz_responses import BlockImages, quantize, success
from resstream_assert.stimuli.probe import embedded_probe

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 32


class Block(nn.Module):
    """A residual block with a zero branch: resid_post = relu(input)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        nn.init.zeros_(self.conv.weight)

    def forward(self, x):
        return F.relu(self.bn(self.conv(F.relu(x))) + x)


class SilentEdgeNet(nn.Module):
    """Stem channel 0: a vertical edge detector minus 1, so X.0's resid_post (= skip_out of block 1)
    is relu(edge - 1): exactly zero on a near-grey image, positive on a strong edge."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 2, 9, padding=4)
        edge = torch.zeros(9, 9)
        edge[:, :4], edge[:, 5:] = -1 / 36, 1 / 36
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.weight[0] = edge
            self.stem.weight[1] = edge.T
            self.stem.bias.copy_(torch.tensor([-1.0, 0.0]))
        self.block0, self.block1 = Block(2), Block(2)
        self.eval()

    def forward(self, x):
        return self.block1(self.block0(self.stem(x)))


def _success(module, result):
    rmap = discover_torch(module, SIZE)
    probe = embedded_probe(n=64, size=SIZE)
    responses = capture_torch(module, rmap, probe.batches(32), sites=("skip_out",))
    images = quantize(result.images)
    fz = capture_torch(module, rmap, [images.astype(np.float32) / 255], sites=("skip_out",))
    bi = BlockImages(1, "block1", result.targets, images, result.objective, result.jitter, 0.0, False)
    return success([bi], fz, responses)


def test_rectified_unit_silent_on_grey_succeeds_only_with_pass_relu():
    """Known answer: the unit is zero on the grey start. The papers' recipe (pass_relu=False) gives
    it no gradient: it stays exactly 0 and fails the success check; with the pass-through ReLU it
    rises above the 99th percentile of its probe responses (the check itself unchanged)."""
    net = SilentEdgeNet()
    targets = [fv.Target(1, "skip_out", 0)]
    kw = dict(mean=MEAN, std=STD, input_size=SIZE)
    start = fv.optimize(net, targets, fv.FeatvizSettings(steps=0), **kw)
    assert start.objective[0] == 0.0  # silent on the grey start
    before = fv.optimize(net, targets, fv.FeatvizSettings(steps=48, pass_relu=False), **kw)
    after = fv.optimize(net, targets, fv.FeatvizSettings(steps=48), **kw)
    assert before.objective[0] == 0.0 and np.array_equal(before.images, start.images)  # never moved
    _, thr_b, ok_b = _success(net, before)
    value, thr, ok = _success(net, after)
    assert not ok_b[0] and ok[0], (value, thr)
    assert value[0] > thr[0] + 0.5


def test_pass_relu_is_exact_forward_and_leaves_other_sites_alone():
    """The surrogate reads the same values as the site; the other sites' gradients are unchanged
    (block 1's branch reads the same rectified tensor)."""
    z = torch.randn(1000) * 3
    assert torch.equal(pass_relu(z), torch.relu(z))
    net = SilentEdgeNet()
    x = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    sites = [(1, "skip_out"), (1, "branch_out"), (1, "resid_sum")]
    plain, through = site_graph(net, sites), site_graph(net, sites, pass_relu_sites=True)
    a, b = plain(x), through(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    ga = torch.autograd.grad(a[1][:, :, 16, 16].sum() + a[2][:, :, 16, 16].sum(), x)[0]
    gb = torch.autograd.grad(b[1][:, :, 16, 16].sum() + b[2][:, :, 16, 16].sum(), x)[0]
    assert torch.equal(ga, gb)


def _grads(module, targets, size, window, settings):
    """The parameterisation's gradient of one step's summed objective (the step optimize_chunk runs)."""
    root = module.eval().requires_grad_(False)
    dev = torch.device("cpu")
    drawn = [draws((0, 0, t.block, 1, t.channel), size, 1, 4, True) for t in targets]
    param = torch.tensor(np.stack([d[0] for d in drawn]), requires_grad=True)
    theta = torch.tensor(np.stack([d[1][0] for d in drawn]))
    rgb = dict(fft=True, decorrelate=True, color=torch.tensor(COLOR_CORRELATION), fscale=freq_scale(size, dev))
    sites, groups = fc.groups_of(targets, dev, window=window)
    with fc.site_forward(module, root, sites, True, True, True) as forward:
        values = fc.step_values(param, theta, forward, groups, size, settings, rgb, fc.stats(MEAN, STD, dev), window)
        values.sum().backward()
    return values.detach(), param.grad


def test_crop_leaves_objective_and_gradient_unchanged_on_torchvision_block():
    """Stated tolerance: objectives equal to 1e-5 relative, and the Fourier parameters' gradient to
    1e-5 of its largest entry (float reassociation of smaller convolutions), on torchvision's
    resnet18 layer2.0 (I, B, O) at 128 px, where the crop keeps under half of the pixels."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    size = 128
    window = block_window(model, 2, size)
    assert window is not None and window.pixels < 0.5 * size * size
    targets = [fv.Target(2, s, c) for s in ("skip_out", "branch_out", "resid_sum") for c in (3, 40)]
    settings = fv.FeatvizSettings()
    v_full, g_full = _grads(model, targets, size, None, settings)
    v_crop, g_crop = _grads(model, targets, size, window, settings)
    torch.testing.assert_close(v_crop, v_full, rtol=1e-5, atol=1e-6)
    assert float(g_full.abs().max()) > 0
    assert float((g_crop - g_full).abs().max()) <= 1e-5 * float(g_full.abs().max())


class GlobalGate(nn.Module):
    """A block whose branch is gated by the whole image's mean (squeeze-excitation style)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return F.relu(self.conv(x) * x.mean((2, 3), keepdim=True) + x)


class SizeScaled(nn.Module):
    """A block whose output is scaled by its input's width: a local field, but not crop-invariant."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.stem(x) * (x.shape[-1] / 32)
        return F.relu(self.conv(x) + x)


def test_crop_is_refused_where_it_would_change_the_unit():
    """Controls: a global op before the site (the field is the whole image) and an input-size
    dependent op (the NaN probe finds a small field; the cropped forward's check catches it) are not
    cropped; a plain local net of the same size is."""
    assert block_window(GlobalGate().eval(), 0, 64) is None
    assert block_window(SizeScaled().eval(), 0, 64) is None

    class Local(SizeScaled):
        def forward(self, x):
            x = self.stem(x)
            return F.relu(self.conv(x) + x)

    w = block_window(Local().eval(), 0, 64)
    assert w is not None and (w.r0, w.r1, w.c0, w.c1) == (30, 35, 30, 35)  # two 3x3 convs: 5x5


def test_crop_and_whole_image_optimise_the_same_images(native_kernels_1):
    """Over steps, the crop changes nothing but float rounding: on zoo:resnet18-synth96's layer1.1 at
    96 px, images optimised with and without the crop agree to 1e-3 after 8 steps."""
    from resstream_assert import load_model

    zoo = load_model("zoo:resnet18-synth96")
    targets = [fv.Target(1, s, c) for s in ("skip_out", "branch_out", "resid_sum") for c in (0, 7)]
    kw = dict(mean=zoo.mean, std=zoo.std, input_size=96)
    crop = fv.optimize(zoo.module, targets, fv.FeatvizSettings(steps=8), **kw)
    full = fv.optimize(zoo.module, targets, fv.FeatvizSettings(steps=8, crop=False), **kw)
    assert np.abs(crop.images - full.images).max() < 1e-3
    np.testing.assert_allclose(crop.objective, full.objective, rtol=1e-3, atol=1e-4)


@pytest.fixture
def native_kernels_1():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "TF32 on top of oneDNN" (Intel GPUs only)
        with torch.backends.mkldnn.flags(enabled=False):
            yield
    torch.set_num_threads(before)


def test_plateau_stops_each_image_on_its_own(native_kernels_1):
    """Early stop (off by default): a dead unit (constant objective) stops at the first check; a live
    one runs on; batched and alone give the same images and the same steps."""
    net = SilentEdgeNet()
    targets = [fv.Target(1, "skip_out", 0), fv.Target(1, "skip_out", 1), fv.Target(1, "branch_out", 0)]
    kw = dict(mean=MEAN, std=STD, input_size=SIZE)
    settings = fv.FeatvizSettings(steps=40, plateau=4, batch_size=8)
    batched = fv.optimize(net, targets, settings, **kw)
    assert fv.optimize(net, targets, fv.FeatvizSettings(steps=40), **kw).steps_run.tolist() == [40, 40, 40]
    assert batched.steps_run[2] == 8  # branch_out is 0 on every input (zero branch): stops at the first check
    assert batched.steps_run[0] > 8
    for i, t in enumerate(targets):
        alone = fv.optimize(net, [t], settings, **kw)
        assert np.array_equal(alone.images[0], batched.images[i]) and alone.steps_run[0] == batched.steps_run[i]
    with pytest.raises(ValueError, match="plateau"):
        fv.FeatvizSettings(plateau=-1).check()


def test_rectifier_follows_the_copy_ops_of_shortcuts():
    """skip_out is rectified through the ops that only move values: the option-A shortcut's subsample
    and zero pad (``F.pad`` traced with ``value=None``), not through a projection's BN."""
    from resstream_assert.discovery.torch_graph import block_nodes, trace
    from resstream_assert.stimuli.featviz_graph import rectifier
    from resstream_assert import load_model

    for spec, expect in (("zoo:cifar-resnet20-synth32", [True] * 9),
                         ("zoo:resnet18-synth96", [True, True, False, True, False, True, False, True])):
        m = load_model(spec).module
        gm = trace(m).gm
        nodes = {n.name: n for n in gm.graph.nodes}
        assert [rectifier(gm, nodes[b.skip_out]) is not None for b in block_nodes(m)] == expect, spec
    cifar = load_model("zoo:cifar-resnet20-synth32").module
    gm = trace(cifar).gm
    relu, chain = rectifier(gm, {n.name: n for n in gm.graph.nodes}[block_nodes(cifar)[3].skip_out])
    assert [n.target.__name__ for n in chain] == ["getitem", "pad"]
