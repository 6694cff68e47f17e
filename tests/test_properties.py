"""Property tests: discovery, capture, controls, statistics and stimulus variants on random inputs.

Networks and probe sets come from ``resstream_assert.strategies``; example counts come from the
Hypothesis profile loaded in conftest (``ci``: 20 fixed examples per property, the slow ONNX
property a fraction of that).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from resstream_assert import stats
from resstream_assert.capture import capture
from resstream_assert.claims import ClaimOptions
from resstream_assert.claims.verdict_stability import evaluate_responses
from resstream_assert.discovery import discover
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.errors import DiscoveryError
from resstream_assert.interventions.controls import apply_control
from resstream_assert.loading.onnx_export import export_onnx
from resstream_assert.pipeline import load_model
from resstream_assert.stimuli.probe import ProbeSet
from resstream_assert.stimuli.variants import FIXED_VARIANTS, apply_variant, parse_variant
from resstream_assert.strategies import (loaded_model, permute_channels, probe_sets,
                                         residual_networks)

SITES_SUM = ("skip_out", "branch_out", "resid_sum")
VARIANTS = ("id", "S", "Sinv", "flip", "shift", "zoom1.5")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks: one intra-op thread (torch and onnxruntime). On a loaded 2-core machine two
    spinning threads per op made these tests ~8x slower."""
    threads, ort = torch.get_num_threads(), os.environ.get("RESSTREAM_ORT_THREADS")
    torch.set_num_threads(1)
    os.environ["RESSTREAM_ORT_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if ort is None:
        os.environ.pop("RESSTREAM_ORT_THREADS", None)
    else:
        os.environ["RESSTREAM_ORT_THREADS"] = ort


def fraction(f: float) -> settings:
    """Settings running ``f`` times the profile's example count (at least 2)."""
    return settings(max_examples=max(2, int(settings.default.max_examples * f)))


def structure(rmap) -> list[tuple]:
    return [(b.name, b.channels, b.spatial, b.projection, b.post_activation, b.gain_kind) for b in rmap]


def expected(bp) -> list[tuple]:
    return [(s.name, s.channels, (s.spatial, s.spatial), s.projection, s.post_activation, s.gain_kind)
            for s in bp.blocks]


def draw_probe(data, bp, n=(1, 4)) -> ProbeSet:
    return ProbeSet.build(*data.draw(probe_sets(n_images=n, sizes=bp.input_size), label="probe"))


def responses(loaded, rmap, probe, variant="id"):
    return capture(loaded, rmap, probe, variants=(variant,), batch_size=3, progress=False)[variant]


# --- discovery --------------------------------------------------------------------------------

@given(net=residual_networks())
def test_discovery_finds_exactly_the_blocks_built(net):
    module, bp = net
    for spec in bp.blocks:  # coverage, shown by --hypothesis-show-statistics
        event(f"{spec.kind} block, {spec.shortcut} shortcut")
    assert structure(discover_torch(module, bp.input_size)) == expected(bp)


# --- capture ----------------------------------------------------------------------------------

@given(net=residual_networks(), data=st.data())
def test_capture_resid_sum_is_skip_plus_branch(net, data):
    module, bp = net
    loaded = loaded_model(module, bp)
    rmap = discover_torch(loaded)
    probe = draw_probe(data, bp)
    r = responses(loaded, rmap, probe, data.draw(st.sampled_from(VARIANTS), label="variant"))
    assert r.logits.shape == (len(probe), bp.num_classes)
    for block in rmap:
        for reducer in ("center", "mean"):
            skip, branch, total = (r.get(block, s, reducer) for s in SITES_SUM)
            assert total.shape == (len(probe), block.channels)
            scale = float(np.abs(total).max()) + 1.0
            np.testing.assert_allclose(total, skip + branch, rtol=0, atol=1e-5 * scale, err_msg=f"{block.name}")


@fraction(0.5)
@given(net=residual_networks(), data=st.data())
def test_torch_and_onnxruntime_captures_agree(net, data):
    module, bp = net
    loaded = loaded_model(module, bp)
    tmap = discover_torch(loaded)
    probe = draw_probe(data, bp)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = load_model(str(export_onnx(loaded, Path(tmp) / "net.onnx")), providers=("cpu",))
        omap = discover(onnx_model)
        assert structure(omap) == expected(bp)  # ONNX discovery reads every shortcut kind right
        assert [b.name for b in omap] == [b.name for b in tmap]
        ref, got = responses(loaded, tmap, probe), responses(onnx_model, omap, probe)
    assert set(ref.center) == set(got.center)
    for table in ("center", "mean"):
        for key, a in getattr(ref, table).items():
            np.testing.assert_allclose(getattr(got, table)[key], a, rtol=0,
                                       atol=1e-4 * float(np.abs(a).max()) + 1e-6, err_msg=f"{table} {key}")
    np.testing.assert_allclose(got.logits, ref.logits, rtol=0, atol=1e-4 * float(np.abs(ref.logits).max()) + 1e-6)


# --- negative controls ------------------------------------------------------------------------

def assert_same_site(r, block, site, other):
    """Bitwise equal center units and spatial means (the tap reduces every map in NCHW order, so a
    channels-last ConvNeXt branch and its contiguous sum give the same float32 mean)."""
    for reducer in ("center", "mean"):
        a, b = r.get(block, site, reducer), r.get(block, other, reducer)
        assert np.array_equal(a, b), (block.name, reducer, site, other, float(np.abs(a - b).max()))


@given(net=residual_networks(block_kinds=("basic", "bottleneck", "convnext")), data=st.data())
def test_nc_id_makes_resid_sum_equal_skip_out(net, data):
    module, bp = net
    module = apply_control(module, "nc-id", input_size=bp.input_size)
    loaded = loaded_model(module, bp)
    rmap = discover_torch(loaded)
    assert [b.name for b in rmap] == [s.name for s in bp.blocks]
    r = responses(loaded, rmap, draw_probe(data, bp))
    for block in rmap:
        assert_same_site(r, block, "resid_sum", "skip_out")
        for reducer in ("center", "mean"):
            assert not np.any(r.get(block, "branch_out", reducer)), block.name


@fraction(0.25)
@given(net=residual_networks(block_kinds=("preact",)))
def test_nc_id_refuses_a_branch_without_gain(net):
    """Pre-activation branches end in a conv: nc-id has nothing to zero and says so (documented)."""
    module, bp = net
    with pytest.raises(DiscoveryError, match="nc-id needs a norm or layer scale"):
        apply_control(module, "nc-id", input_size=bp.input_size)


@given(net=residual_networks(), data=st.data())
def test_nc_plain_makes_resid_sum_equal_branch_out(net, data):
    module, bp = net
    plain = apply_control(module, "nc-plain", input_size=bp.input_size)
    loaded = loaded_model(plain, bp)
    rmap = discover_torch(loaded)
    assert [(b.channels, b.spatial) for b in rmap] == [(s.channels, (s.spatial,) * 2) for s in bp.blocks]
    r = responses(loaded, rmap, draw_probe(data, bp))
    for block in rmap:
        assert_same_site(r, block, "resid_sum", "branch_out")


@given(net=residual_networks(block_kinds=("basic", "bottleneck", "preact")))
def test_nc_plain_keeps_block_names(net):
    module, bp = net
    plain = apply_control(module, "nc-plain", input_size=bp.input_size)
    assert [b.name for b in discover_torch(plain, bp.input_size)] == [s.name for s in bp.blocks]


@given(net=residual_networks(block_kinds=("convnext",)))
def test_nc_plain_keeps_block_names_of_layer_scale_blocks(net):
    module, bp = net
    plain = apply_control(module, "nc-plain", input_size=bp.input_size)
    assert [b.name for b in discover_torch(plain, bp.input_size)] == [s.name for s in bp.blocks]


@fraction(0.5)
@given(net=residual_networks(depth=(2, 4), widths=(6, 16), input_sizes=16), data=st.data(),
       seed=st.integers(0, 2**16))
def test_verdicts_do_not_depend_on_channel_order(net, data, seed):
    """Relabelling every block's channels (all sites, gains, conv magnitudes alike) changes no statistic
    and no verdict of an exact test (C1); a permutation test's (C3) p moves only by Monte-Carlo error."""
    module, bp = net
    loaded = loaded_model(module, bp)
    rmap = discover_torch(loaded)
    probe = ProbeSet.build(*data.draw(probe_sets(n_images=(50, 64), sizes=bp.input_size), label="probe"))
    resp = {"id": responses(loaded, rmap, probe)}
    opts = ClaimOptions(min_channels=4, n_resamples=499, n_boot=0)
    a = evaluate_responses(rmap, resp, ["C1", "C3"], options=opts)
    b = evaluate_responses(*permute_channels(rmap, resp, seed), ["C1", "C3"], options=opts)
    assert a["C1"].to_dict()["rows"] == b["C1"].to_dict()["rows"]
    for cid in ("C1", "C3"):
        event(f"{cid} {a[cid].verdict.value}")  # coverage, shown by --hypothesis-show-statistics
    for ra, rb in zip(a["C3"].rows, b["C3"].rows):
        assert (ra.verdict == rb.verdict) or abs(ra.p_adjusted - opts.alpha) < 0.05, (ra, rb)
        np.testing.assert_allclose(rb.effect, ra.effect, rtol=0, atol=1e-12, equal_nan=True)


# --- statistics -------------------------------------------------------------------------------

INTS = st.integers(-50, 50).map(float)  # distinct integers stay distinct under every transform below
INCREASING = {"affine": lambda v: 3.0 * v - 7.0, "cube": lambda v: v**3, "exp": lambda v: np.exp(v / 10),
              "arctan": lambda v: np.arctan(v / 10), "log": lambda v: np.log(v + 51.0)}
ALTERNATIVES = st.sampled_from(("less", "greater", "two-sided"))


def paired(min_n=3, max_n=30):
    return st.integers(min_n, max_n).flatmap(
        lambda n: st.tuples(st.lists(INTS, min_size=n, max_size=n), st.lists(INTS, min_size=n, max_size=n)))


def outcome(fn, *args, **kwargs):
    """A test's result as comparable numbers, or the exception type it raised."""
    try:
        r = fn(*args, **kwargs)
    except stats.DegenerateDataError:
        return stats.DegenerateDataError
    return (r.statistic, r.p_value, r.effect, r.ci_low, r.ci_high, r.n)


@given(xy=paired(), fx=st.sampled_from(sorted(INCREASING)), fy=st.sampled_from(sorted(INCREASING)),
       alternative=ALTERNATIVES, seed=st.integers(0, 2**16))
def test_spearman_is_invariant_to_monotone_transforms(xy, fx, fy, alternative, seed):
    x, y = (np.array(v) for v in xy)
    kw = {"alternative": alternative, "rng": seed, "n_resamples": 199, "n_boot": 99}
    assert outcome(stats.spearman_permutation, x, y, **kw) == \
        outcome(stats.spearman_permutation, INCREASING[fx](x), INCREASING[fy](y), **kw)


@given(xy=paired(), seed=st.integers(0, 2**16))
def test_spearman_of_a_decreasing_transform_flips_sign(xy, seed):
    x, y = (np.array(v) for v in xy)
    assume(np.ptp(x) > 0 and np.ptp(y) > 0)
    up = stats.spearman_permutation(x, y, alternative="two-sided", rng=seed, n_resamples=99, n_boot=0)
    down = stats.spearman_permutation(-x, y, alternative="two-sided", rng=seed, n_resamples=99, n_boot=0)
    assert down.effect == pytest.approx(-up.effect, abs=1e-12)


@given(x=st.lists(INTS, min_size=1, max_size=20), y=st.lists(INTS, min_size=1, max_size=20),
       f=st.sampled_from(sorted(INCREASING)), alternative=ALTERNATIVES, seed=st.integers(0, 2**16))
def test_mann_whitney_is_invariant_to_monotone_transforms(x, y, f, alternative, seed):
    x, y = np.array(x), np.array(y)
    kw = {"alternative": alternative, "rng": seed, "n_boot": 99}
    fx, fy = INCREASING[f](x), INCREASING[f](y)
    assert outcome(stats.mann_whitney, x, y, **kw) == outcome(stats.mann_whitney, fx, fy, **kw)


@given(xy=paired(), n_resamples=st.integers(1, 300), alternative=ALTERNATIVES, seed=st.integers(0, 2**16))
def test_permutation_p_values_lie_in_their_range(xy, n_resamples, alternative, seed):
    x, y = (np.array(v) for v in xy)
    lo = 1.0 / (n_resamples + 1)
    try:
        p = stats.spearman_permutation(x, y, alternative=alternative, rng=seed, n_resamples=n_resamples,
                                       n_boot=0).p_value
        assert lo <= p <= 1.0
    except stats.DegenerateDataError:
        pass
    p = stats.empirical_pvalue(float(x[0]), y[:n_resamples], alternative=alternative)
    assert 1.0 / (min(len(y), n_resamples) + 1) <= p <= 1.0


@given(table=st.lists(st.lists(st.integers(0, 12), min_size=2, max_size=3), min_size=2, max_size=3)
       .filter(lambda t: len({len(r) for r in t}) == 1),
       n_resamples=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_monte_carlo_chi2_p_value_lies_in_its_range(table, n_resamples, seed):
    try:
        r = stats.chi2_independence_mc(table, rng=seed, n_resamples=n_resamples, n_boot=0)
    except stats.DegenerateDataError:
        return
    assert 1.0 / (n_resamples + 1) <= r.p_value <= 1.0


@given(p=st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.05, float("nan")])), min_size=1,
                  max_size=30))
def test_holm_is_monotone_and_bounded(p):
    raw = np.array(p)
    adj = stats.holm(raw)
    assert adj.shape == raw.shape
    assert np.array_equal(np.isnan(adj), np.isnan(raw))
    ok = ~np.isnan(raw)
    r, a = raw[ok], adj[ok]
    assert np.all(a >= r) and np.all(a <= 1.0)
    raw_le = r[:, None] <= r[None, :]  # wherever p_i <= p_j, adjusted p_i <= adjusted p_j
    assert np.all((a[:, None] <= a[None, :]) | ~raw_le)


@given(n=st.integers(0, 30), c=st.integers(1, 6), positive=st.booleans(), seed=st.integers(0, 2**16),
       rounded=st.booleans())
def test_vectorized_spearman_columns_equal_scipy(n, c, positive, seed, rounded):
    """measures' per-column Spearman equals scipy.stats.spearmanr column by column (ties, constant columns,
    too few rows and the x > 0 subset included)."""
    from scipy.stats import spearmanr

    from resstream_assert.measures.block import _spearman_columns

    g = np.random.default_rng(seed)
    x, y = g.normal(size=(n, c)).astype(np.float32), g.normal(size=(n, c)).astype(np.float32)
    if rounded:
        x, y = np.round(x), np.round(y)
    x[:, 0] = 1.0 if c > 2 else x[:, 0]
    got = _spearman_columns(x, y, positive)
    for j in range(c):
        keep = x[:, j] > 0 if positive else slice(None)
        xs, ys = x[keep, j], y[keep, j]
        if xs.size >= 5 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            assert got[j] == pytest.approx(spearmanr(xs, ys).statistic, abs=1e-12)
        else:
            assert np.isnan(got[j])


# --- stimulus variants ------------------------------------------------------------------------

@st.composite
def float_images(draw, min_side=8, max_side=48):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    dtype = draw(st.sampled_from((torch.float32, torch.float64)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.rand(n, 3, h, w, generator=g, dtype=dtype)


@given(images=float_images(), variant=st.sampled_from(FIXED_VARIANTS + ("zoom1.25", "zoom3", "zoomout1.5")))
def test_variants_keep_shape_dtype_and_range(images, variant):
    out = apply_variant(images, variant)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= -1e-6 and float(out.max()) <= 1 + 1e-6


@given(data=st.data())
def test_S_and_Sinv_keep_shape_and_dtype_of_probe_images(data):
    probe = ProbeSet.build(*data.draw(probe_sets()))
    x = torch.from_numpy(next(probe.batches(len(probe))))
    for variant in ("S", "Sinv"):
        out = apply_variant(x, variant)
        assert out.shape == x.shape and out.dtype == x.dtype, variant


@given(images=float_images(min_side=1), name=st.sampled_from(("zoom1", "zoom1.0", "zoomout1", "zoomout1.0")))
def test_zoom_by_one_is_the_identity(images, name):
    assert parse_variant(name)[1] == 1.0
    assert torch.equal(apply_variant(images, name), images)
