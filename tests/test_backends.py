"""Backend selection and the spconv / MinkowskiEngine adapters.

The strongest check: one MinkUNet definition (pcseg.models.minkunet) built on the torch
backend and on the spconv backend, with the torch weights converted to spconv's layout,
gives the same logits, features and parameter gradients (float64, train-mode BatchNorm).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from pcseg.models import build_model
from pcseg.sparse import SparseTensor
from pcseg.sparse.backend_minkowski import (
    install_collections_shim,
    state_dict_from_minkowski,
    state_dict_to_minkowski,
    weight_from_minkowski,
    weight_to_minkowski,
)
from pcseg.sparse.backends import (
    BACKENDS,
    ENV_VAR,
    BackendUnavailableError,
    SparseBackend,
    TorchBackend,
    get_backend,
    resolve_backend_name,
)

HAS_ME = importlib.util.find_spec("MinkowskiEngine") is not None
HAS_SPCONV = importlib.util.find_spec("spconv") is not None
needs_spconv = pytest.mark.skipif(not HAS_SPCONV, reason="spconv not installed")


def small_scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batch entries of surfaces (floor + wall + a step), ~2k voxels; coords (M, 4)
    int32 [batch, x, y, z] with negative values, feats (M, 3) float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.arange(-15, 15)
    U, V = torch.meshgrid(a, a, indexing="ij")
    floor = torch.stack([U.flatten(), V.flatten(), torch.zeros(U.numel(), dtype=torch.long)], 1)
    Uw, Hw = torch.meshgrid(a, torch.arange(0, 15), indexing="ij")
    wall = torch.stack([Uw.flatten(), torch.full((Uw.numel(),), -15), Hw.flatten()], 1)
    step = floor[(floor[:, 0] > 4) & (floor[:, 1] > 4)] + torch.tensor([0, 0, 3])
    s0 = torch.unique(torch.cat([floor, wall, step]), dim=0)
    s1 = torch.unique(torch.cat([floor[::3], wall[::2]]), dim=0) + torch.tensor([7, -3, 1])
    coords = torch.cat(
        [
            torch.cat([torch.zeros(len(s0), 1, dtype=torch.long), s0], 1),
            torch.cat([torch.ones(len(s1), 1, dtype=torch.long), s1], 1),
        ]
    ).to(torch.int32)
    perm = torch.randperm(coords.shape[0], generator=g)  # rows in no particular order
    coords = coords[perm]
    feats = torch.rand(coords.shape[0], 3, generator=g, dtype=torch.float64)
    return coords, feats


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


@pytest.mark.skipif(HAS_ME, reason="MinkowskiEngine is installed")
def test_minkowski_missing_gives_recipe(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    for call in (
        lambda: get_backend("minkowski"),
        lambda: build_model("MinkUNet14A", 3, 4, backend="minkowski"),
    ):
        with pytest.raises(BackendUnavailableError) as e:
            call()
        msg = str(e.value)
        assert "MinkowskiEngine==0.5.4" in msg and "libopenblas-dev" in msg
        assert "--cpu_only" in msg and "collections.Sequence" in msg
    # the adapter class itself says the same (and is an ImportError for `except ImportError`)
    from pcseg.sparse.backend_minkowski import MinkowskiBackend

    with pytest.raises(ImportError, match="libopenblas-dev"):
        MinkowskiBackend()


def test_collections_shim():
    import collections
    import collections.abc

    install_collections_shim()
    assert collections.Sequence is collections.abc.Sequence  # type: ignore[attr-defined]
    assert install_collections_shim() == []  # idempotent


# ------------------------------------------------------------ weight converters
def test_minkowski_state_dict_round_trip():
    m = build_model("MinkUNet14A", 3, 5, backend="torch")
    sd = m.state_dict()
    me = state_dict_to_minkowski(sd)
    # hand-checked entries: stem conv (k=5), a 1x1 residual conv, BN and the head
    assert "conv0p1s1.weight" not in me and me["conv0p1s1.kernel"].shape == (125, 3, 32)
    assert torch.equal(me["conv0p1s1.kernel"], sd["conv0p1s1.weight"])
    k1 = [k for k, v in sd.items() if k.endswith(".weight") and v.dim() == 3 and v.shape[0] == 1]
    assert k1, "MinkUNet14A has 1x1 residual convs"
    key = k1[0][: -len(".weight")] + ".kernel"
    assert me[key].shape == sd[k1[0]].shape[1:] and torch.equal(me[key], sd[k1[0]][0])
    assert torch.equal(me["bn0.running_var"], sd["bn0.running_var"])
    assert torch.equal(me["final.weight"], sd["final.weight"]) and me["final.weight"].dim() == 2
    back = state_dict_from_minkowski(me)
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    # conv bias (C,) <-> (1, C)
    me_b = state_dict_to_minkowski({"c.weight": torch.zeros(27, 2, 4), "c.bias": torch.arange(4.0)})
    assert me_b["c.bias"].shape == (1, 4)
    assert state_dict_from_minkowski(me_b)["c.bias"].shape == (4,)
    assert weight_to_minkowski(torch.zeros(1, 2, 3), stride_one=False).shape == (1, 2, 3)
    assert weight_from_minkowski(torch.zeros(2, 3)).shape == (1, 2, 3)


# ------------------------------------------------------------ spconv adapter
@needs_spconv
def test_spconv_adapter_argument_checks():
    from pcseg.sparse.backend_spconv import SpconvBackend

    be = get_backend("spconv")
    assert isinstance(be, SpconvBackend)
    with pytest.raises(ValueError, match="key"):
        be.down_conv(4, 4, 2, 2, key=None)
    with pytest.raises(ValueError, match="kernel_size=2"):
        be.down_conv(4, 4, 3, 2, key="d")
    with pytest.raises(ValueError, match="odd"):
        be.subm_conv(4, 4, 2)
    coords, feats = small_scene()
    a = be.make_input(coords, feats.float())
    b = be.make_input(coords[1:], feats[1:].float())
    with pytest.raises(ValueError, match="different indices"):
        be.cat(a, b)
    # the input keeps the caller's row order
    from pcseg.sparse.backend_spconv import indices_to_coords

    assert torch.equal(indices_to_coords(a.indices, a.pcseg_origin), coords)


def _model_pair(backend: str, to_backend) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A float64 MinkUNet14A on the torch backend with non-trivial BN statistics, and the same
    model on ``backend`` loaded from it through ``to_backend`` (a state-dict converter)."""
    torch.manual_seed(0)
    ref = build_model("MinkUNet14A", 3, 7, backend="torch").double()
    for mod in ref.modules():  # non-trivial BN statistics so eval mode is a real test
        if isinstance(mod, torch.nn.BatchNorm1d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    alt = build_model("MinkUNet14A", 3, 7, backend=backend).double()
    assert alt.backend.name == backend
    alt.load_state_dict(to_backend(ref.state_dict()))
    return ref, alt


def _check_same_outputs_and_grads(ref, alt, from_backend, train: bool) -> None:
    """Forward both models on small_scene(); logits / features to 1e-10, and in train mode
    every parameter gradient (mapped back through ``from_backend``) and BN running stats."""
    coords, feats = small_scene()
    ref.train(train)
    alt.train(train)
    logits1, feat1 = ref(SparseTensor(coords, feats))
    logits2, feat2 = alt(SparseTensor(coords, feats))
    assert logits1.shape == logits2.shape == (coords.shape[0], 7)
    assert feat2.shape == (coords.shape[0], alt.feature_dim)
    torch.testing.assert_close(logits2, logits1, rtol=0, atol=1e-10)
    torch.testing.assert_close(feat2, feat1, rtol=0, atol=1e-10)
    assert logits1.std() > 1e-3
    if not train:
        return
    target = torch.randn_like(logits1)
    ((logits1 - target) ** 2).mean().backward()
    ((logits2 - target) ** 2).mean().backward()
    g1 = {k: p.grad for k, p in ref.named_parameters()}
    g2 = from_backend({k: p.grad for k, p in alt.named_parameters()})
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-7, atol=1e-10, msg=k)
    sd1, sd2 = ref.state_dict(), from_backend(alt.state_dict())
    torch.testing.assert_close(sd2["bn0.running_mean"], sd1["bn0.running_mean"], rtol=0, atol=1e-12)
    torch.testing.assert_close(
        sd2["block8.0.norm2.running_var"], sd1["block8.0.norm2.running_var"], rtol=0, atol=1e-12
    )


@needs_spconv
@pytest.mark.parametrize("train", [True, False])
def test_minkunet_spconv_equals_torch(train):
    from pcseg.sparse.backend_spconv import (
        num_threads,
        state_dict_from_spconv,
        state_dict_to_spconv,
    )

    ref, alt = _model_pair("spconv", state_dict_to_spconv)
    # one thread: spconv needs it without the patch, and it keeps the test fast on a
    # shared 2-core machine (OpenMP with 2 threads on a busy machine can be 10x slower)
    with num_threads(1):
        _check_same_outputs_and_grads(ref, alt, state_dict_from_spconv, train)


@pytest.mark.skipif(not HAS_ME, reason="MinkowskiEngine not installed")
@pytest.mark.parametrize("train", [True, False])
def test_minkunet_minkowski_equals_torch(train):
    """The same MinkUNet on MinkowskiEngine 0.5.4 (CPU) gives pcseg's logits and gradients."""
    ref, alt = _model_pair("minkowski", state_dict_to_minkowski)
    _check_same_outputs_and_grads(ref, alt, state_dict_from_minkowski, train)
