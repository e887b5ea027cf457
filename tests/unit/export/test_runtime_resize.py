"""Training resizes frames with the device's own function, so both see the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torchvision import tv_tensors  # noqa: E402

from edge_ad.export.families.data import RuntimeResize  # noqa: E402
from edge_ad.inference.preprocess import resize_frame  # noqa: E402

pytestmark = pytest.mark.export


@pytest.mark.parametrize("shape", [(200, 150), (60, 90)], ids=["shrink", "enlarge"])
def test_training_resize_equals_the_runtime_resize(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    batch = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
    mask = tv_tensors.Mask(torch.from_numpy(image[..., 0] > 128)[None])
    out_image, out_mask = RuntimeResize(96)(batch, mask)
    expected = resize_frame(image, 96, 96).astype(np.float32) / 255.0
    assert isinstance(out_image, tv_tensors.Image) and out_image.shape == (1, 3, 96, 96)
    np.testing.assert_array_equal(out_image[0].permute(1, 2, 0).numpy(), expected)
    assert isinstance(out_mask, tv_tensors.Mask) and out_mask.shape == (1, 96, 96) and out_mask.dtype == torch.bool
