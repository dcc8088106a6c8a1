"""The Python API validates what it is given: empty, NaN/inf, meta-device or unsupported inputs
are a ValueError (or TypeError) naming the problem; valid strided arrays work (issue 26, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from stylenet.inference import Stylizer
from stylenet.tiling import tiled_forward
from stylenet.transformer import TransformerNet

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def narrow() -> Stylizer:
    """A narrow random network: what input handling needs, at a fraction of the trained one's cost;
    max_pixels small so a 40x40 picture already takes the tiled (uint8) path."""
    torch.manual_seed(0)
    return Stylizer(TransformerNet(4, 0), device="cpu", precision="fp32", max_pixels=1024, tile_size=64)


def photo(h: int = 30, w: int = 41) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- refused, with a message that says what is wrong ---------------------------------------------
@pytest.mark.parametrize("shape", [(0, 8, 3), (8, 0, 3), (0, 0, 3), (0, 8, 8, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("tile", ["auto", True])
def test_empty_arrays_are_a_value_error(narrow, shape, dtype, tile):
    with pytest.raises(ValueError, match=r"empty"):
        narrow.stylize(np.zeros(shape, dtype), tile=tile)


def test_empty_tensors_and_pictures_are_a_value_error(narrow):
    for x in (torch.zeros(0, 3, 8, 8), torch.zeros(1, 3, 0, 5), torch.zeros(3, 4, 0)):
        with pytest.raises(ValueError, match=r"empty"):
            narrow.stylize_tensor(x)
    with pytest.raises(ValueError, match=r"empty"):
        narrow.stylize(Image.new("RGB", (0, 0)))
    with pytest.raises(ValueError, match=r"empty"):
        tiled_forward(narrow.net, torch.zeros(1, 3, 0, 16, dtype=torch.uint8), tile=32)


@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.tuples(st.integers(0, 11), st.integers(0, 15), st.integers(0, 2)),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]), tile=st.sampled_from(["auto", True, False]))
@SETTINGS
def test_nan_and_inf_pixels_are_a_value_error(narrow, bad, where, dtype, tile):
    """One non-finite pixel anywhere, any float type, tiled or not: refused (it used to come back all NaN)."""
    array = np.full((12, 16, 3), 0.5, dtype)
    array[where] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        narrow.stylize(array, tile=tile)
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        narrow.stylize_tensor(torch.from_numpy(array).permute(2, 0, 1).float(), tile=tile)


def test_nan_into_tiling_directly_is_a_value_error(narrow):
    x = torch.rand(1, 3, 40, 40)
    x[0, 1, 7, 9] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        tiled_forward(narrow.net, x, tile=32)


def test_meta_device_tensor_is_a_value_error(narrow):
    for x in (torch.empty(1, 3, 8, 8, device="meta"), torch.empty(3, 8, 8, device="meta")):
        with pytest.raises(ValueError, match=r"meta device"):
            narrow.stylize_tensor(x)
        with pytest.raises(ValueError, match=r"meta device"):
            narrow.stylize(x)
    with pytest.raises(ValueError, match=r"meta device"):
        tiled_forward(narrow.net, torch.empty(1, 3, 8, 8, device="meta"))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64])
def test_unsupported_tensor_dtypes_are_a_value_error(narrow, dtype):
    x = torch.zeros(1, 3, 8, 8, dtype=dtype)
    with pytest.raises(ValueError, match=r"unsupported dtype|expected a float tensor"):
        narrow.stylize_tensor(x)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.bool_, np.complex64, object])
def test_unsupported_array_dtypes_are_a_value_error(narrow, dtype):
    with pytest.raises(ValueError, match=r"uint8 or float"):
        narrow.stylize(np.zeros((8, 8, 3), dtype))


def test_a_sparse_tensor_is_a_value_error(narrow):
    with pytest.raises(ValueError, match=r"dense"):
        narrow.stylize_tensor(torch.zeros(1, 3, 4, 4).to_sparse())


def test_not_a_tensor_is_a_type_error(narrow):
    with pytest.raises(TypeError, match=r"torch.Tensor"):
        narrow.stylize_tensor(np.zeros((1, 3, 4, 4), np.float32))


# -- valid, however it is laid out ---------------------------------------------------------------
@pytest.mark.parametrize("tile", [True, "auto", False])
def test_flipped_negative_stride_arrays_work(narrow, tile):
    """A view flipped in any axis (negative strides) gives what its contiguous copy gives, tiled
    (uint8 path, 30x41 > max_pixels) or not."""
    base = photo()
    for view in (base[::-1], base[:, ::-1], base[::-1, ::-1], base[..., ::-1], base[::2, ::-3]):
        assert any(step < 0 for step in view.strides) or not view.flags.c_contiguous
        got = narrow.stylize(view, tile=tile)
        assert got.shape == view.shape and got.dtype == np.uint8
        # the same pixels; a strided layout may round differently in a convolution (float32: 1e-6)
        np.testing.assert_allclose(got.astype(int), narrow.stylize(np.ascontiguousarray(view), tile=tile).astype(int), atol=1)
    bgr = narrow.stylize(base[..., ::-1], bgr=True, tile=tile)  # an RGB array flipped to BGR in place
    np.testing.assert_allclose(bgr.astype(int), narrow.stylize(base, tile=tile)[..., ::-1].astype(int), atol=1)


@given(shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
       flip=st.tuples(st.booleans(), st.booleans()), step=st.integers(1, 3), tile=st.sampled_from([True, "auto"]),
       as_float=st.booleans())
@SETTINGS
def test_any_strided_view_comes_back_the_same_size(narrow, shape, flip, step, tile, as_float):
    array = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    if as_float:
        array = array.astype(np.float32) / 255
    view = array[:: -step if flip[0] else step, :: -1 if flip[1] else 1]
    got = narrow.stylize(view, tile=tile)
    assert got.shape == view.shape and got.dtype == view.dtype
    assert np.isfinite(got).all()
    want = narrow.stylize(np.ascontiguousarray(view), tile=tile)
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1 if view.dtype == np.uint8 else 1e-4)


def test_float_tensor_types_and_a_non_contiguous_tensor_work(narrow):
    x = torch.rand(1, 3, 20, 24)
    want = narrow.stylize_tensor(x)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        y = narrow.stylize_tensor(x.to(dtype))
        assert y.dtype == dtype and torch.allclose(y.float(), want, atol=0.05)
    transposed = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert torch.allclose(narrow.stylize_tensor(transposed), want, atol=1e-6)
