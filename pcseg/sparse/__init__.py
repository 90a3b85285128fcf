"""Pure-PyTorch sparse convolution engine (gather-GEMM-scatter), CPU and CUDA.

Public API::

    SparseTensor(coords (M,4) int [batch,x,y,z], feats (M,C), stride=1, manager=None)
    CoordinateManager                      # keys / coarse coords / kernel maps cache
    SubMConv3d, Conv3d, ConvTranspose3d, BatchNorm, ReLU
    cat, add, relu, global_avg_pool, global_max_pool, voxel_to_point
    sparse_conv(feats, weight (K,Cin,Cout), kmap)   # the autograd op
    KernelMap, kernel_offsets                       # MinkowskiEngine offset order
    get_backend(name=None), TorchBackend, BackendUnavailableError
"""

from .backends import (
    BACKENDS,
    BackendUnavailableError,
    SparseBackend,
    TorchBackend,
    get_backend,
    register_backend,
    resolve_backend_name,
)
from .functional import sparse_conv
from .kernel_map import KernelMap, kernel_offsets
from .keys import COORD_MAX, COORD_MIN, MAX_BATCH, CoordinateRangeError, pack_keys, unpack_keys
from .nn import (
    BatchNorm,
    Conv3d,
    ConvTranspose3d,
    ReLU,
    SubMConv3d,
    add,
    cat,
    global_avg_pool,
    global_max_pool,
    relu,
    voxel_to_point,
)
from .tensor import CoordinateManager, SparseTensor

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "BatchNorm",
    "COORD_MAX",
    "COORD_MIN",
    "Conv3d",
    "ConvTranspose3d",
    "CoordinateManager",
    "CoordinateRangeError",
    "KernelMap",
    "MAX_BATCH",
    "ReLU",
    "SparseBackend",
    "SparseTensor",
    "SubMConv3d",
    "TorchBackend",
    "add",
    "cat",
    "get_backend",
    "global_avg_pool",
    "global_max_pool",
    "kernel_offsets",
    "pack_keys",
    "register_backend",
    "relu",
    "resolve_backend_name",
    "sparse_conv",
    "unpack_keys",
    "voxel_to_point",
]
