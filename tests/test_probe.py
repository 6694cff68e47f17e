"""Probe sets: the embedded probe, folder probes, and their error messages."""

import numpy as np
import pytest
from PIL import Image

from resstream_assert.errors import ProbeError
from resstream_assert.stimuli.probe import ProbeSet, embedded_probe, folder_probe, load_probe
from resstream_assert.stimuli.synthetic import CLASS_NAMES


@pytest.fixture(scope="module")
def probe():
    return embedded_probe(n=40, size=32, seed=0)


def test_embedded_probe_layout(probe):
    assert probe.images.shape == (40, 3, 32, 32) and probe.images.dtype == np.uint8
    assert probe.labels.dtype == np.int64 and probe.size == 32 and len(probe) == 40
    assert probe.class_names == CLASS_NAMES
    # 35 labeled synthetic test images first, then 5 unlabeled natural crops.
    assert set(probe.labels[:35].tolist()) == set(range(len(CLASS_NAMES)))
    assert (probe.labels[35:] == -1).all()
    assert probe.names[0] == "synth/test/0" and all(n.startswith("skimage/") for n in probe.names[35:])
    assert len(set(probe.names)) == len(probe.names)


def test_embedded_digest_is_stable_and_content_keyed(probe):
    assert embedded_probe(n=40, size=32, seed=0).digest == probe.digest
    assert embedded_probe(n=40, size=32, seed=1).digest != probe.digest
    assert len(probe.digest) == 64


def test_batches_subset_labeled(probe):
    batches = list(probe.batches(16))
    assert [b.shape[0] for b in batches] == [16, 16, 8]
    assert batches[0].dtype == np.float32 and 0.0 <= batches[0].min() and batches[0].max() <= 1.0
    lab = probe.labeled()
    assert len(lab) == 35 and (lab.labels >= 0).all()
    sub = probe.subset([3, 1])
    assert sub.names == (probe.names[3], probe.names[1]) and sub.digest != probe.digest


def test_no_natural_part():
    p = embedded_probe(n=12, size=24, natural_fraction=0.0)
    assert (p.labels >= 0).all()


def _write(path, w, h, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), colour, np.uint8)).save(path)


def test_folder_probe_class_tree(tmp_path):
    _write(tmp_path / "dogs" / "a.png", 60, 40, 10)
    _write(tmp_path / "cats" / "b.jpg", 40, 70, 200)
    _write(tmp_path / "cats" / "c.png", 50, 50, 100)
    p = folder_probe(tmp_path, size=32)
    assert p.class_names == ("cats", "dogs")
    assert p.images.shape == (3, 3, 32, 32)
    assert dict(zip(p.names, p.labels.tolist())) == {"cats/b.jpg": 0, "cats/c.png": 0, "dogs/a.png": 1}
    assert folder_probe(tmp_path, size=32).digest == p.digest


def test_folder_probe_flat_and_subsample(tmp_path):
    for i in range(6):
        _write(tmp_path / f"img{i}.png", 40, 30, 40 * i)
    p = folder_probe(tmp_path, size=16)
    assert (p.labels == -1).all() and p.class_names == () and len(p) == 6
    a = folder_probe(tmp_path, n=3, size=16, seed=4)
    assert len(a) == 3 and a.names == folder_probe(tmp_path, n=3, size=16, seed=4).names
    assert list(a.names) == sorted(a.names)  # subsample keeps file order
    assert len(load_probe(str(tmp_path), n=2, size=16)) == 2
    assert load_probe(None, n=8, size=16).class_names == CLASS_NAMES


def test_missing_folder_error(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        folder_probe(tmp_path / "nowhere")


def test_file_instead_of_folder_error(tmp_path):
    _write(tmp_path / "x.png", 8, 8, 0)
    with pytest.raises(ProbeError, match="not a folder"):
        folder_probe(tmp_path / "x.png")


def test_empty_folder_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ProbeError, match="contains no images"):
        folder_probe(tmp_path)


def test_unreadable_image_error_names_the_file(tmp_path):
    _write(tmp_path / "good.png", 8, 8, 0)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ProbeError, match="broken.png.*Remove or replace"):
        folder_probe(tmp_path, size=8)


def test_build_rejects_mismatched_arrays():
    with pytest.raises(ProbeError, match="do not fit"):
        ProbeSet.build(np.zeros((2, 3, 8, 8), np.uint8), np.zeros(3), ["a", "b"], ())


@pytest.mark.parametrize("mode, value, want", [
    ("I;16", 0x8080, 128), ("I;16", 0xFFFF, 255), ("I", 40000, 156), ("I", 200, 200),
    ("F", 0.5, 128), ("F", 200.0, 200),
])
def test_high_bit_depth_images_are_scaled_not_clipped(mode, value, want):
    from resstream_assert.stimuli.probe import to_rgb

    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    im = Image.fromarray(np.full((6, 6), value, dtype))
    assert im.mode == mode
    assert to_rgb(im).getpixel((0, 0)) == (want, want, want)


def test_images_below_a_quarter_of_the_input_size_are_refused(tmp_path):
    Image.new("RGB", (16, 20), (1, 2, 3)).save(tmp_path / "small.png")
    assert folder_probe(tmp_path, size=64).images.shape == (1, 3, 64, 64)  # 16 px = a quarter of 64: accepted
    with pytest.raises(ProbeError, match=r"small\.png .* is 16x20 px: too small for a 96 px input .* at least 24 px"):
        folder_probe(tmp_path, size=96)


# --- the shipped natural probe set ---------------------------------------------------------------

def test_shipped_cifar10_probe_is_balanced_and_labelled_in_cifar_order():
    from resstream_assert.stimuli.probe import shipped_probe

    p = shipped_probe("cifar10", size=32)
    assert p.images.shape == (1000, 3, 32, 32)
    assert p.class_names == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert np.bincount(p.labels).tolist() == [100] * 10
    assert all(n.split("/")[1] == p.class_names[lab] for n, lab in zip(p.names, p.labels))
    # photographs, not shapes: many distinct colours and no flat background
    assert len(np.unique(p.images[:50].reshape(50, 3, -1).transpose(0, 2, 1).reshape(-1, 3), axis=0)) > 10000


def test_shipped_probe_reads_like_a_folder_of_the_same_files(tmp_path):
    """The zip is only packaging: extracted to a folder, the same files give the same probe set."""
    import zipfile

    from resstream_assert.stimuli.probe import SHIPPED, SHIPPED_DIR, shipped_probe

    with zipfile.ZipFile(SHIPPED_DIR / SHIPPED["cifar10"]) as zf:
        zf.extractall(tmp_path)
    for size in (32, 64):
        a = shipped_probe("cifar10", n=40, size=size, seed=3)
        b = folder_probe(tmp_path / "cifar10", n=40, size=size, seed=3)
        assert a.digest == b.digest and a.class_names == b.class_names


def test_probe_names_resolve_and_unknown_names_are_refused(tmp_path):
    from resstream_assert.config.checks import probe_dir

    assert load_probe("cifar10", n=16, size=32).class_names[0] == "airplane"
    assert probe_dir("cifar10") == "" and probe_dir("embedded") == ""
    assert "shipped probe set (cifar10)" in probe_dir(str(tmp_path / "cifar100"))


def test_each_zoo_model_is_measured_on_its_own_probe_unless_one_is_given():
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline

    pipe = Pipeline(RunConfig(images=16))
    assert pipe.probe_source("zoo:resnet18-cifar64") == "cifar10"
    assert pipe.probe_source("zoo:cifar-resnet20-synth32") == "embedded"  # the shapes it was trained on
    assert pipe.probe_source("torchvision:resnet18") is None
    given = Pipeline(RunConfig(images=16, probe="embedded"))
    assert given.probe_source("zoo:resnet18-cifar64") == "embedded"
