"""pcseg.sparse.backends: backend selection, and the CUDA path against the CPU."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.backends import HAS_SPCONV
from helpers.sparse import random_coords

from pcseg.models import build_model
from pcseg.sparse import (
    BackendUnavailableError,
    Conv3d,
    SparseTensor,
    SubMConv3d,
    get_backend,
)
from pcseg.sparse import backends as backends_mod
from pcseg.sparse.backends import (
    BACKENDS,
    ENV_VAR,
    SparseBackend,
    TorchBackend,
    resolve_backend_name,
)


# ------------------------------------------------------------------- backends
def test_backend_selection(monkeypatch):
    monkeypatch.delenv("PCSEG_SPARSE_BACKEND", raising=False)
    assert get_backend().name == "torch"
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "torch")
    assert get_backend().name == "torch"
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="valid: torch, minkowski, spconv"):
        get_backend()
    monkeypatch.setattr(backends_mod, "_importable", lambda name: False)
    with pytest.raises(BackendUnavailableError, match="libopenblas-dev") as ei:
        get_backend("minkowski")
    assert "collections.Sequence" in str(ei.value) and "MinkowskiEngine==0.5.4" in str(ei.value)
    with pytest.raises(BackendUnavailableError, match=r"pip install spconv==2\.3\.8"):
        get_backend("spconv")


# ------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_cuda_subm_and_strided_match_cpu():
    c = random_coords(2, 10, 0.3)
    f = torch.randn(len(c), 4)
    conv, down = SubMConv3d(4, 6, 3), Conv3d(6, 5, 2)
    y_cpu = down(conv(SparseTensor(c, f))).feats
    conv_c, down_c = SubMConv3d(4, 6, 3).cuda(), Conv3d(6, 5, 2).cuda()
    conv_c.load_state_dict(conv.state_dict())
    down_c.load_state_dict(down.state_dict())
    y_gpu = down_c(conv_c(SparseTensor(c.cuda(), f.cuda()))).feats
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    with torch.autocast("cuda", dtype=torch.float16):
        y16 = down_c(conv_c(SparseTensor(c.cuda(), f.cuda()))).feats
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16.float().cpu(), y_cpu, rtol=3e-2, atol=3e-2)
    assert math.isfinite(float(y16.float().sum()))


def test_init_kernel_is_kaiming_fan_out():
    """The one kernel init of all backends draws what kaiming_normal_(fan_out, relu) draws."""
    from pcseg.sparse.nn import SubMConv3d, init_kernel_

    k, c_in, c_out = 27, 5, 7
    torch.manual_seed(3)
    w = torch.empty(k, c_in, c_out)
    init_kernel_(w, k, c_out)
    torch.manual_seed(3)
    ref = torch.empty(c_out, c_in, k)  # torch's fan_out of (out, in, k) is out * k
    torch.nn.init.kaiming_normal_(ref, mode="fan_out", nonlinearity="relu")
    assert torch.equal(w.flatten(), ref.flatten())
    torch.manual_seed(3)
    conv = SubMConv3d(c_in, c_out, 3, bias=False)
    assert torch.equal(conv.weight.detach().flatten(), ref.flatten())


# ------------------------------------------------------------------ selection
def test_unknown_backend_lists_valid_names(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ValueError) as e:
        get_backend("cuda-magic")
    for name in BACKENDS:
        assert name in str(e.value)
    monkeypatch.setenv(ENV_VAR, "nope")
    with pytest.raises(ValueError, match=ENV_VAR):
        get_backend()


def test_env_var_selection(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert isinstance(get_backend(), TorchBackend)
    monkeypatch.setenv(ENV_VAR, "torch")
    assert resolve_backend_name() == "torch"
    if HAS_SPCONV:
        monkeypatch.setenv(ENV_VAR, "spconv")
        be = get_backend()
        assert be.name == "spconv" and isinstance(be, SparseBackend)
        assert get_backend("torch").name == "torch"  # the argument wins over the variable
        m = build_model("MinkUNet14A", 3, 4)  # backend=None -> the variable
        assert m.backend.name == "spconv"
    monkeypatch.setenv(ENV_VAR, "MinkowskiEngine")  # alias
    assert resolve_backend_name() == "minkowski"
