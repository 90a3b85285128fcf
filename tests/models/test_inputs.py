"""The network input of a batch: the image tensor of an image batch, the cached SparseTensor of
a voxel batch (one per batch, shared by the student and U2PL's teacher)."""

from __future__ import annotations

import torch

from pcseg.models.inputs import SPARSE_INPUT_KEY, network_input, sparse_input
from pcseg.sparse import SparseTensor


def test_image_batch_gives_its_images():
    images = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    x = network_input({"images": images, "labels": torch.zeros(40, dtype=torch.long)})
    assert x.dtype == torch.float32 and x.shape == (2, 3, 4, 5)
    torch.testing.assert_close(x, images.float())


def test_voxel_batch_gives_one_cached_sparse_tensor():
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.int32)
    batch = {"coords": coords, "feats": torch.ones(3, 2)}
    x = network_input(batch)
    assert isinstance(x, SparseTensor) and batch[SPARSE_INPUT_KEY] is x
    assert network_input(batch) is x and sparse_input(batch) is x
