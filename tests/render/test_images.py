"""The one float -> uint8 conversion of renders (previews, the viewer, `engine render`, SAM's views)."""

import numpy as np
import torch

from engine.render.images import to_uint8


def test_to_uint8_rounds_and_clamps():
    image = torch.tensor([[[-0.5, 0.0, 0.5], [1.0, 2.0, 0.999]]])
    out = to_uint8(image)
    assert out.dtype == np.uint8
    assert out.tolist() == [[[0, 0, 128], [255, 255, 255]]]


def test_to_uint8_rounds_ties_up_and_keeps_batches():
    tie = torch.tensor([2.5 / 255], dtype=torch.float32)
    assert float(tie * 255) == 2.5  # an exact tie in float32
    assert to_uint8(tie).tolist() == [3]  # half up (half to even would give 2)
    batch = torch.rand(2, 4, 5, 3, generator=torch.Generator().manual_seed(0))
    out = to_uint8(batch)
    assert out.shape == (2, 4, 5, 3) and np.abs(out / 255.0 - batch.numpy()).max() <= 0.5 / 255 + 1e-6
