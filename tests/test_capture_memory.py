"""A large capture spills its reductions to disk: the same numbers, shared sites still shared, files removed,
cache entries written and read one array at a time, bad settings refused before any forward pass."""

from __future__ import annotations

import gc
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision

from resstream_assert.capture import CaptureSettings
from resstream_assert.capture.cache import ResponseCache
from resstream_assert.capture.memory import LazyTable, Spill, identity
from resstream_assert.capture.responses import Responses, checksum, load_checked
from resstream_assert.capture.torch_fx import capture_torch
from resstream_assert.discovery.torch_graph import discover_torch
from resstream_assert.errors import CacheEntryError, ResstreamWarning
from resstream_assert.loading.random_weights import randomize_bn

SIZE = 64


@pytest.fixture(scope="module")
def model():
    """torchvision's resnet18 as published (BatchNorm statistics randomised so that channels differ)."""
    torch.manual_seed(0)
    return randomize_bn(torchvision.models.resnet18().eval())


@pytest.fixture(scope="module")
def rmap(model):
    return discover_torch(model, SIZE)


def _batches():
    x = np.random.default_rng(0).random((10, 3, SIZE, SIZE), dtype=np.float32)
    return [x[:4], x[4:8], x[8:]]


def _same(a: Responses, b: Responses) -> None:
    assert sorted(a.center) == sorted(b.center) and sorted(a.mean) == sorted(b.mean)
    for table_a, table_b in ((a.center, b.center), (a.mean, b.mean)):
        for key in table_a:
            x, y = table_a[key], table_b[key]
            assert x.dtype == y.dtype and x.shape == y.shape, key
            assert np.array_equal(x, y), key
    np.testing.assert_array_equal(a.logits, b.logits)


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_spilled_capture_equals_the_capture_in_memory(model, rmap, tmp_path, storage):
    kept = capture_torch(model, rmap, _batches(), storage=storage)
    spilled = capture_torch(model, rmap, _batches(), storage=storage, spill=Spill(10, 0, tmp_path))
    assert isinstance(spilled.center, LazyTable) and not isinstance(kept.center, LazyTable)
    _same(kept, spilled)
    # Sites that are one tensor in memory (resid_pre = previous resid_post, identity skip_out) share one file.
    for table_k, table_s in ((kept.center, spilled.center), (kept.mean, spilled.mean)):
        for k1 in table_k:
            for k2 in table_k:
                assert (table_k[k1] is table_k[k2]) == (identity(table_s, k1) == identity(table_s, k2)), (k1, k2)
    assert spilled.n_images == 10 and not spilled.center["1/resid_pre"].flags.writeable
    folder = next(tmp_path.iterdir())
    assert len(list(folder.glob("*.bin"))) == len({identity(t, k) for t in (spilled.center, spilled.mean) for k in t})
    del spilled, table_s  # the loop's variable holds a table too
    gc.collect()
    assert not folder.exists(), "the spill folder outlives its responses"


def test_spilled_onnx_capture_equals_the_capture_in_memory(model, tmp_path):
    """The onnxruntime backend spills the same way (an ONNX file exported as torch.onnx writes it)."""
    pytest.importorskip("onnxruntime")
    from resstream_assert.capture.onnx_runtime import capture_onnx
    from resstream_assert.discovery import discover
    from resstream_assert.loading import LoadedModel
    from resstream_assert.loading.onnx_export import export_onnx
    from resstream_assert.pipeline import load_model

    wrapped = LoadedModel(spec="r18", name="r18", backend="torch", module=model, input_size=SIZE, num_classes=1000,
                          digest="r18")
    loaded = load_model(str(export_onnx(wrapped, tmp_path / "r18.onnx")), providers=("cpu",))
    omap = discover(loaded)
    kept = capture_onnx(loaded, omap, _batches(), storage="float16")
    spilled = capture_onnx(loaded, omap, _batches(), storage="float16", spill=Spill(10, 0, tmp_path / "spill"))
    assert isinstance(spilled.center, LazyTable)
    _same(kept, spilled)


def test_small_capture_stays_in_memory(model, rmap, tmp_path):
    got = capture_torch(model, rmap, _batches(), spill=Spill(10, 10 * 2**20, tmp_path))
    assert isinstance(got.center, dict) and not any(tmp_path.iterdir())


def test_a_float32_chunk_among_float16_ones_makes_the_file_float32(tmp_path):
    """As numpy's concatenate does in memory: a value beyond float16's range keeps its site in float32."""
    spill = Spill(6, 0, tmp_path)
    chunks = [np.array([[1.5, 2.0]], np.float16), np.array([[7e4, 1.0]], np.float32), np.array([[3.0, 4.0]], np.float16)]
    for c in chunks:
        spill.after_batch({"center": {"0/a": [c]}}, 1)
    got = spill.join("center", {"0/a": []}, np.concatenate)["0/a"]
    expect = np.concatenate(chunks)
    assert got.dtype == expect.dtype == np.float32 and np.array_equal(got, expect)


def test_subset_of_spilled_responses(model, rmap, tmp_path):
    kept = capture_torch(model, rmap, _batches())
    spilled = capture_torch(model, rmap, _batches(), spill=Spill(10, 0, tmp_path))
    a, b = kept.subset([7, 0, 3]), spilled.subset([7, 0, 3])
    _same(a, b)
    assert b.center["1/resid_pre"] is b.center["0/resid_post"]  # still one array after the subset


def test_cache_entry_of_spilled_responses_round_trips_and_is_checked(model, rmap, tmp_path, monkeypatch):
    spilled = capture_torch(model, rmap, _batches(), spill=Spill(10, 0, tmp_path / "spill"))
    cache = ResponseCache(tmp_path / "cache")
    cache.get_or_compute("k", lambda: spilled)
    path = tmp_path / "cache" / "k.npz"
    # Read back in memory (a small entry), then one array at a time (an entry over the limit).
    _same(spilled, cache.get_or_compute("k", lambda: pytest.fail("recomputed")))
    monkeypatch.setattr("resstream_assert.capture.responses.SPILL_BYTES", 0)
    lazy = Responses.load(path, key="k")
    assert isinstance(lazy.center, LazyTable)
    _same(spilled, lazy)
    assert identity(lazy.center, "1/resid_pre") == identity(lazy.center, "0/resid_post")
    # The checksum still guards a lazily read entry: one array changed, the zip itself intact.
    with np.load(path) as z:
        members = {name: z[name] for name in z.files}
    members["center|3/branch_out"] = members["center|3/branch_out"] + np.float16(1)
    np.savez(path, **members)
    with pytest.raises(CacheEntryError, match="checksum"):
        load_checked(path, "k", lazy_over=0)
    with pytest.warns(ResstreamWarning, match="not trusted"):
        cache.get_or_compute("k", lambda: spilled)


def test_entries_written_by_numpy_savez_still_load(tmp_path):
    """The streamed writer keeps np.savez's layout, so entries written before it (and by numpy) read back."""
    arrays = {"center|0/a": np.arange(6, dtype=np.float16).reshape(3, 2), "variant": np.array("id")}
    path = tmp_path / "old.npz"
    np.savez(path, **arrays, __cache_key__=np.array("k"), __checksum__=np.array(checksum("k", arrays)))
    got = load_checked(path, "k")
    assert np.array_equal(got["center|0/a"], arrays["center|0/a"]) and got["center|0/a"].dtype == np.float16
    with zipfile.ZipFile(path) as zf:  # and ours is a plain numpy archive
        assert sorted(zf.namelist()) == ["__cache_key__.npy", "__checksum__.npy", "center|0/a.npy", "variant.npy"]


def test_a_spill_folder_that_cannot_be_written_is_a_clear_error(model, rmap, tmp_path):
    from resstream_assert.errors import CaptureError

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(CaptureError, match="could not be written to .*a-file.*Free space there, or give another"):
        capture_torch(model, rmap, _batches(), spill=Spill(10, 0, blocked))


@pytest.mark.parametrize("bad", [-1, True, "1GB", 1.5])
def test_bad_spill_limit_is_refused_before_any_forward(model, rmap, bad):
    with pytest.raises(ValueError, match="spill_over must be a number of bytes"):
        CaptureSettings(spill_over=bad).check()
    from resstream_assert.capture import capture

    with pytest.raises(ValueError, match="spill_over"):
        capture(model, rmap, probe=None, spill_over=bad)  # refused before the probe is even looked at


def test_pipeline_verdicts_are_unchanged_when_everything_spills(monkeypatch, tmp_path):
    from resstream_assert.claims import ClaimOptions, needed_variants
    from resstream_assert.claims.verdict_stability import evaluate_responses
    from resstream_assert.config import RunConfig
    from resstream_assert.measures import measure_all
    from resstream_assert.pipeline import Pipeline

    spec, claims = "zoo:cifar-resnet20-synth32", ["C1", "C3", "C5", "C6", "C8", "C9"]
    got = {}
    for limit in (None, 0):
        settings = Pipeline.capture_settings
        monkeypatch.setattr(Pipeline, "capture_settings",
                            lambda self, storage="float32", lim=limit, orig=settings: replace(orig(self, storage), spill_over=lim,
                                                                                   spill_dir=str(tmp_path)))
        pipe = Pipeline(RunConfig(models=(spec,), images=256, progress=False, cache_dir=None))
        resp = pipe.responses(spec, needed_variants(claims))
        assert isinstance(resp["id"].center, LazyTable) == (limit == 0)
        got[limit] = (measure_all(pipe.map(spec), resp),
                      evaluate_responses(pipe.map(spec), resp, claims, options=ClaimOptions(n_boot=0)))
        monkeypatch.setattr(Pipeline, "capture_settings", settings)
    for a, b in zip(got[None][0], got[0][0]):
        assert np.array_equal(a.m_p1, b.m_p1, equal_nan=True) and np.array_equal(a.m_p2, b.m_p2, equal_nan=True)
    assert {c: r.verdict for c, r in got[None][1].items()} == {c: r.verdict for c, r in got[0][1].items()}
