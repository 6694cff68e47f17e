"""The batched feature-visualization optimiser (interventions/featviz): known answers, dead units,
determinism, batched == alone, truncation, the transform's geometry, the lucent aliasing bug (W1),
and the CUDA options (bf16 autocast, channels_last, TF32) on the same code path on CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings as hsettings, strategies as st

import resstream_assert.stimuli.featviz as fv
from resstream_assert.torch_utils import module_outputs
from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.stimuli.featviz_param import affine
from resstream_assert.capture.featviz_responses import BlockImages, success
from resstream_assert.stimuli.probe import embedded_probe

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZE = 32
# Centre unit of a 9x9 'same' conv at 32 px sees pixels 12..20.
PATCH = (slice(None), slice(12, 21), slice(12, 21))


class KnownNet(nn.Module):
    """One residual block on a fixed 9x9 stem: stem channel 0 = vertical edge (dark left, bright
    right), 1 = red-vs-green/blue colour detector, 2 = dead (zero weights, bias -1), 3 =
    horizontal edge. The branch is zero except channel 2 (bias -1), so resid_post[2] = 0 always."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 9, padding=4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        edge = torch.zeros(9, 9)
        edge[:, :4], edge[:, 5:] = -1 / 36, 1 / 36
        with torch.no_grad():
            self.stem.weight.zero_()
            self.stem.bias.zero_()
            self.stem.weight[0] = edge
            self.stem.weight[1] = torch.tensor([1.0, -0.5, -0.5]).view(3, 1, 1) / 81
            self.stem.bias[2] = -1.0
            self.stem.weight[3] = edge.T
            self.conv.weight.zero_()
            self.bn.bias[2] = -1.0
        self.eval()

    def forward(self, x):
        x = self.stem(x)
        out = self.bn(self.conv(self.relu(x.clone())))
        return self.relu(out + x)

    @staticmethod
    def kernel(c: int) -> np.ndarray:
        return KnownNet().stem.weight[c].detach().numpy()


def run(module, targets, size=SIZE, progress=None, **kw):
    kw.setdefault("steps", 48)
    return fv.optimize(module, targets, fv.FeatvizSettings(**kw), mean=MEAN, std=STD, input_size=size,
                       progress=progress)


def corr(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="module")
def known():
    return KnownNet()


@pytest.fixture(scope="module")
def known_result(known):
    targets = [fv.Target(0, "skip_out", c) for c in range(4)] + [fv.Target(0, "resid_post", 2)]
    return run(known, targets)


@pytest.fixture(scope="module")
def zoo():
    from resstream_assert import load_model

    return load_model("zoo:resnet18-synth96")


def test_known_answer_edges_and_colour(known_result):
    """Threshold: Pearson r between the grey centre patch (9x9 receptive field) and the known
    edge kernel > 0.8, and |r| with the orthogonal kernel < 0.3; the colour unit's patch is red:
    mean(R) - mean(G, B) > 0.3 and r(mean colour, (1, -.5, -.5)) > 0.9."""
    imgs = known_result.images
    vertical, horizontal = KnownNet.kernel(0).mean(0), KnownNet.kernel(3).mean(0)
    for c, own, other in ((0, vertical, horizontal), (3, horizontal, vertical)):
        grey = imgs[c][PATCH].mean(0)
        assert corr(grey, own) > 0.8, (c, corr(grey, own))
        assert abs(corr(grey, other)) < 0.3, (c, corr(grey, other))
    rgb = imgs[1][PATCH].mean(axis=(1, 2))
    assert rgb[0] - rgb[1:].mean() > 0.3, rgb
    assert corr(rgb, [1.0, -0.5, -0.5]) > 0.9, rgb


def test_dead_units_fail_success_and_live_units_pass(known, known_result):
    """Success = the unit's response to its image > the 99th percentile of its probe responses.
    Channel 2 is dead (constant -1 on every input, 0 after the block's ReLU): it must fail."""
    rmap = discover_torch(known, SIZE)
    probe = embedded_probe(n=48, size=SIZE)
    responses = capture_torch(known, rmap, probe.batches(16), sites=("skip_out", "resid_post"))
    images = np.clip(np.round(known_result.images * 255), 0, 255).astype(np.uint8)
    fz = capture_torch(known, rmap, [images.astype(np.float32) / 255], sites=("skip_out", "resid_post"))
    bi = BlockImages(0, "block", known_result.targets, images, known_result.objective, known_result.jitter, 0.0, False)
    value, threshold, ok = success([bi], fz, responses)
    assert ok.tolist() == [True, True, False, True, False], (value, threshold)
    # dead units never moved: zero gradient everywhere
    assert known_result.objective[2] == pytest.approx(-1.0) and known_result.objective[4] == 0.0
    assert value[2] == pytest.approx(threshold[2]) and value[4] == threshold[4] == 0.0


def test_same_seed_identical_different_seed_differs(known):
    a = run(known, [fv.Target(0, "skip_out", 0, seed=0)], steps=8)
    b = run(known, [fv.Target(0, "skip_out", 0, seed=0)], steps=8)
    c = run(known, [fv.Target(0, "skip_out", 0, seed=1)], steps=8)
    assert np.array_equal(a.images, b.images)
    assert np.abs(a.images - c.images).max() > 0.05


@pytest.fixture
def native_kernels():
    """Convolution kernels that compute each image alone, whatever the batch, on one thread.

    oneDNN (torch's default CPU convolution) chooses its algorithm and blocking by batch size
    and CPU: a batch of 5 and a batch of 1 sum the same products in another order, a 1e-7
    difference. Over steps such a difference is not bounded: where a ReLU or max-pool is near a
    tie it changes which input receives the gradient, and Adam (which divides by the gradient's
    size) turns that into a full step. Measured on zoo:resnet18-synth96, layer2.1 branch_out
    channel 5, 64 px: 6e-7 after 1 step, 1e-4 after 2, 2.7e-2 after 6 on one CPU, 2.2e-3 after 6
    on another. With torch's native kernels (oneDNN off) every image is computed alone in every
    path, and batched and alone are the same numbers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "TF32 on top of oneDNN" (Intel GPUs only)
        with torch.backends.mkldnn.flags(enabled=False):
            yield
    torch.set_num_threads(before)


def test_batched_equals_alone(zoo, native_kernels):
    """The design's guarantee (see the module docstring): a batched image follows its own
    trajectory, with its own random draws, so with per-image kernels it is the image optimised
    alone, bit for bit, over every step."""
    m = zoo.module
    targets = [fv.Target(3, s, c) for s in ("skip_out", "branch_out", "resid_sum") for c in (0, 5)] + \
              [fv.Target(0, "branch_out", 3, seed=2), fv.Target(5, "branch_out", 1)]
    kw = dict(steps=6, batch_size=5, regime="per-layer", size=64)  # two chunks, jitters 0, 4 and 16
    batched = fv.optimize(m, targets, fv.FeatvizSettings(**kw), mean=zoo.mean, std=zoo.std, input_size=64)
    assert sorted(set(batched.jitter.tolist())) == [0, 4, 16]
    start = fv.optimize(m, targets, fv.FeatvizSettings(**{**kw, "steps": 0}), mean=zoo.mean, std=zoo.std,
                        input_size=64)
    assert np.abs(batched.images - start.images).max() > 0.01  # it did optimise
    for i, t in enumerate(targets):
        alone = fv.optimize(m, [t], fv.FeatvizSettings(**kw), mean=zoo.mean, std=zoo.std, input_size=64)
        assert np.array_equal(alone.images[0], batched.images[i]), t
        assert alone.objective[0] == batched.objective[i], t


def test_batched_and_alone_forwards_agree_with_default_kernels(zoo):
    """With oneDNN's batch-size-dependent kernels, what is guaranteed is one forward's float
    reassociation: the objective of the same start images, measured in chunks of 5 and alone,
    agrees to 1e-5 relative (a few float32 ulps over the network's sums)."""
    m = zoo.module
    targets = [fv.Target(3, s, c) for s in ("skip_out", "branch_out", "resid_sum") for c in (0, 5)]
    kw = dict(steps=0, batch_size=5, regime="per-layer", size=64)
    batched = fv.optimize(m, targets, fv.FeatvizSettings(**kw), mean=zoo.mean, std=zoo.std, input_size=64)
    for i, t in enumerate(targets):
        alone = fv.optimize(m, [t], fv.FeatvizSettings(**kw), mean=zoo.mean, std=zoo.std, input_size=64)
        assert np.array_equal(alone.images[0], batched.images[i]), t  # the draws are the image's own
        assert alone.objective[0] == pytest.approx(batched.objective[i], rel=1e-5, abs=1e-6), t


def test_truncated_graph_stops_at_deepest_site_and_matches_hooks(zoo):
    m = zoo.module
    gm = fv.site_graph(m, [(0, "branch_out"), (0, "skip_out")])
    names = [n.name for n in gm.graph.nodes]
    assert not any(n.startswith(("layer1_1", "layer2", "fc", "avgpool")) for n in names), names
    x = torch.rand(2, 3, 96, 96)
    with module_outputs(m, ["layer1.0.bn2", "maxpool"]) as ref, torch.no_grad():
        m(x)
    with torch.no_grad():
        bn2, pool = gm(x)
    assert torch.equal(bn2, ref["layer1.0.bn2"]) and torch.equal(pool, ref["maxpool"])


def test_regimes_jitter_table(zoo):
    m = zoo.module
    sites = ("skip_out", "branch_out", "resid_post")
    per_layer = fv.FeatvizSettings(regime="per-layer")
    block = fv.FeatvizSettings()
    assert [fv.jitter_for(m, fv.Target(3, s, 0), per_layer) for s in sites] == [0, 4, 4]   # layer2.1
    assert [fv.jitter_for(m, fv.Target(3, s, 0), block) for s in sites] == [4, 4, 4]
    assert [fv.jitter_for(m, fv.Target(5, s, 0), per_layer) for s in sites] == [4, 16, 16]  # layer3.1
    assert [fv.jitter_for(m, fv.Target(b, "branch_out", 0), block) for b in range(8)] == [0, 0, 0, 4, 4, 16, 16, 16]
    assert fv.jitter_for(m, fv.Target(0, "branch_out", 0), fv.FeatvizSettings(jitter=8)) == 8
    # The papers' jitter is in px of 224 px images: the block regime scales it to the image size
    # (16 px would shift a 32 px image by half its width); per-layer keeps the papers' pixels.
    assert [fv.jitter_for(m, fv.Target(b, "branch_out", 0), block, 96) for b in (3, 5)] == [2, 7]
    assert [fv.jitter_for(m, fv.Target(b, "branch_out", 0), block, 224) for b in (3, 5)] == [4, 16]
    unscaled = fv.FeatvizSettings(scale_jitter=False)
    assert [fv.jitter_for(m, fv.Target(b, "branch_out", 0), unscaled, 96) for b in (3, 5)] == [4, 16]
    assert fv.jitter_for(m, fv.Target(5, "branch_out", 0), per_layer, 96) == 16


@hsettings(max_examples=30, deadline=None)
@given(st.integers(0, 15), st.integers(0, 15), st.integers(0, 7), st.integers(0, 7))
def test_affine_is_lucent_shift_with_symmetric_padding(ux, uy, vx, vy):
    """At scale 1 and angle 0 the composed affine is an exact integer shift by u1 + u2
    (lucent's pad(16) + jitter(16) + jitter(8) + centre crop), padding by reflection about the
    border (numpy 'symmetric')."""
    size = 24
    img = np.random.default_rng(0).random((1, 1, size, size)).astype(np.float32)
    theta = affine(np.ones(1), np.zeros(1), np.array([[ux, uy]]), np.array([[vx, vy]]), size)
    grid = F.affine_grid(torch.tensor(theta), [1, 1, size, size], align_corners=False)
    out = F.grid_sample(torch.tensor(img), grid, padding_mode="reflection", align_corners=False).numpy()
    p = 32
    padded = np.pad(img[0, 0], p, mode="symmetric")
    dx, dy = ux + vx, uy + vy
    expect = padded[p - dy:p - dy + size, p - dx:p - dx + size]
    assert np.allclose(out[0, 0], expect, atol=1e-5)


def test_uncloned_bn2_objective_is_the_block_output(zoo):
    """lucent's hook does not clone: torchvision's `out += identity` and ReLU(inplace=True)
    overwrite bn2's output, so the 'bn2' objective reads (and optimises) resid_post."""
    m = zoo.module
    x = np.random.default_rng(1).random((8, 3, 96, 96), dtype=np.float32)
    bn2 = [fv.Target(0, "branch_out", c) for c in range(8)]
    post = [fv.Target(0, "resid_post", c) for c in range(8)]
    aliased = fv.measure(m, x, bn2, mean=zoo.mean, std=zoo.std, clone=False)
    clean_bn2 = fv.measure(m, x, bn2, mean=zoo.mean, std=zoo.std)
    clean_post = fv.measure(m, x, post, mean=zoo.mean, std=zoo.std)
    np.testing.assert_allclose(aliased, clean_post, rtol=1e-6, atol=1e-6)
    assert np.abs(aliased - clean_bn2).max() > 0.1
    # Optimising 'bn2' both ways: different images, and the cloned run reaches higher true bn2 values.
    targets = [fv.Target(0, "branch_out", c) for c in range(4)]
    kw = dict(steps=16, batch_size=4, size=64)
    good = fv.optimize(m, targets, fv.FeatvizSettings(**kw), mean=zoo.mean, std=zoo.std, input_size=64)
    bad = fv.optimize(m, targets, fv.FeatvizSettings(**kw, clone=False), mean=zoo.mean, std=zoo.std, input_size=64)
    assert np.abs(good.images - bad.images).max() > 0.1
    assert good.objective.mean() > bad.objective.mean(), (good.objective, bad.objective)
    # what the buggy run did optimise: resid_post of its images equals its aliased 'bn2' reading
    np.testing.assert_allclose(fv.measure(m, bad.images, targets, mean=zoo.mean, std=zoo.std, clone=False),
                               fv.measure(m, bad.images, [fv.Target(0, "resid_post", t.channel) for t in targets],
                                          mean=zoo.mean, std=zoo.std), rtol=1e-6, atol=1e-6)


def test_bad_targets_raise(known):
    with pytest.raises(ValueError):
        run(known, [fv.Target(0, "nowhere", 0)], steps=1)
    with pytest.raises(ValueError):
        run(known, [fv.Target(0, "skip_out", 99)], steps=1)
    with pytest.raises(ValueError):
        fv.measure(known, np.zeros((1, 3, SIZE, SIZE), np.float32), [fv.Target(0, "resid_sum", 0)],
                   mean=MEAN, std=STD, clone=False)


def test_channels_last_pixel_param_and_progress(known):
    targets = [fv.Target(0, "skip_out", c) for c in (0, 1, 3)]
    calls = []
    plain = run(known, targets, steps=8, batch_size=2, progress=lambda d, n: calls.append((d, n)))
    assert calls[-1] == (16, 16) and len(calls) == 16  # 2 chunks x 8 steps
    cl = run(known, targets, steps=8, batch_size=2, channels_last=True)
    assert np.abs(cl.images - plain.images).max() < 1e-3
    pix, pix0 = run(known, targets, steps=8, fft=False), run(known, targets, steps=0, fft=False)
    assert pix.images.shape == plain.images.shape and (pix.objective > pix0.objective + 0.05).all()


def test_bf16_autocast_within_tolerance(known):
    """bf16 autocast (the CUDA option ``amp``; the same autocast path runs on CPU) may move images,
    not results: stated tolerance, every final objective (measured in fp32) within 10% of the
    fp32 run's and the same units succeed (objective above the fp32 start)."""
    targets = [fv.Target(0, "skip_out", c) for c in (0, 1, 3)]
    full, half = run(known, targets, steps=16), run(known, targets, steps=16, amp=True)
    start = run(known, targets, steps=0)
    np.testing.assert_allclose(half.objective, full.objective, rtol=0.10)
    assert ((half.objective > start.objective) == (full.objective > start.objective)).all()
    assert np.abs(half.images - full.images).max() > 0  # it did run in bf16


def test_tf32_option_leaves_the_users_settings(known):
    """TF32 is toggled only on CUDA and restored afterwards; on CPU the option is a no-op (same images)."""
    targets = [fv.Target(0, "skip_out", 0)]
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    a, b = run(known, targets, steps=4), run(known, targets, steps=4, tf32=True)
    assert np.array_equal(a.images, b.images)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with fv.tf32(torch.device("cuda"), True):  # flags only: no CUDA device is needed to set them
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_bad_settings_raise_clear_errors():
    for bad, word in ((dict(lr=0), "lr"), (dict(steps=-1), "steps"), (dict(regime="lucent"), "regime"),
                      (dict(size=4), "size"), (dict(batch_size=0), "batch_size")):
        with pytest.raises(ValueError, match=word):
            fv.FeatvizSettings(**bad).check()
