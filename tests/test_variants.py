"""Stimulus variants: S, S^-1, zooms and the non-scale controls."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from resstream_assert.stimuli.variants import ZOOMS, apply_variant, parse_variant, zoom_variant


def _images(h=32, w=32, n=2):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def test_S_is_the_upsampled_centre_quadrant():
    x = _images()
    expected = TF.resize(x[..., 8:24, 8:24], [32, 32], antialias=True)
    assert torch.allclose(apply_variant(x, "S"), expected)
    # A constant centre quadrant fills the whole zoomed image.
    y = torch.zeros(1, 3, 32, 32)
    y[..., 8:24, 8:24] = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    out = apply_variant(y, "S")
    assert torch.allclose(out, y[..., 16:17, 16:17].expand_as(out), atol=1e-6)


def test_Sinv_keeps_size_and_puts_the_shrunk_image_in_the_middle():
    x = _images()
    out = apply_variant(x, "Sinv")
    assert out.shape == x.shape
    small = TF.resize(x, [16, 16], antialias=True)
    assert torch.allclose(out[..., 8:24, 8:24], small)
    # Reflect padding mirrors around the edge pixel: column 7 equals column 9.
    assert torch.equal(out[..., 8:24, 7], out[..., 8:24, 9])


def test_Sinv_odd_size_and_gray_padding():
    x = _images(33, 33)
    assert apply_variant(x, "Sinv").shape == x.shape
    gray = apply_variant(_images(), "Sinv_gray")
    assert torch.all(gray[..., :8, :] == 0.5) and torch.all(gray[..., :, 24:] == 0.5)


def test_large_zoom_out_mirrors_repeatedly_and_keeps_size():
    x = _images()
    assert apply_variant(x, "zoomout4").shape == x.shape


def test_flip_twice_is_identity_and_zoom1_is_identity():
    x = _images()
    assert torch.equal(apply_variant(apply_variant(x, "flip"), "flip"), x)
    assert torch.equal(apply_variant(x, zoom_variant(1.0)), x)
    assert torch.equal(apply_variant(x, "id"), x)


def test_shift_moves_content_by_an_eighth():
    x = _images()
    out = apply_variant(x, "shift")
    assert out.shape == x.shape and torch.equal(out[..., 4:, 4:], x[..., :-4, :-4])


def test_zoom_names_round_trip():
    assert [zoom_variant(z) for z in (1.0, 1.25, 2.0)] == ["zoom1", "zoom1.25", "zoom2"]
    for z in ZOOMS:
        assert parse_variant(zoom_variant(z)) == ("zoom", z)
    assert parse_variant("S") == ("zoom", 2.0) and parse_variant("Sinv") == ("zoomout", 2.0)
    # S is exactly zoom2.
    x = _images()
    assert torch.equal(apply_variant(x, "S"), apply_variant(x, "zoom2"))


@pytest.mark.parametrize("bad", ["bogus", "zoom0.5", "zoom9", "zoomout", "s", ""])
def test_parse_errors_list_valid_names(bad):
    with pytest.raises(ValueError, match="Sinv"):
        parse_variant(bad)


def test_rejects_uint8_images():
    with pytest.raises(ValueError, match="float"):
        apply_variant(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "flip")


def test_symmetric_pair_shares_kernel_window_and_frame():
    """S_sym and Sinv_sym: the same grey frame and window, the same number of samples upsampled by the same
    bilinear kernel; only the content's scale differs (the centre half vs the whole image)."""
    x = _images(32, 32)
    zin, zout = apply_variant(x, "S_sym"), apply_variant(x, "Sinv_sym")
    window = slice(4, 27)  # round(32 / sqrt 2) = 23 pixels, centred
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[window, window] = False
    assert torch.all(zin[..., frame] == 0.5) and torch.all(zout[..., frame] == 0.5)
    up = lambda a: TF.resize(a, [23, 23], antialias=True)  # noqa: E731
    assert torch.allclose(zin[..., window, window], up(x[..., 8:24, 8:24]))  # 16 native samples of the centre
    assert torch.allclose(zout[..., window, window], up(TF.resize(x, [16, 16], antialias=True)))  # 16 of all of it
    # an image that looks the same at every scale (a constant) gives the same pair
    c = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(apply_variant(c, "S_sym"), apply_variant(c, "Sinv_sym"))
    assert parse_variant("S_sym")[0] == "zoom_sym" and parse_variant("Sinv_sym")[0] == "zoomout_sym"
