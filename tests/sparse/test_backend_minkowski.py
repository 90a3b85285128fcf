"""pcseg.sparse.backend_minkowski: the install recipe when MinkowskiEngine is missing, the
collections shim, the weight converters, and one MinkUNet on MinkowskiEngine equal to the
torch backend (logits and gradients)."""

from __future__ import annotations

import pytest
import torch
from helpers.backends import (
    HAS_ME,
    _check_same_outputs_and_grads,
    _model_pair,
)

from pcseg.models import build_model
from pcseg.sparse.backend_minkowski import (
    install_collections_shim,
    state_dict_from_minkowski,
    state_dict_to_minkowski,
    weight_from_minkowski,
    weight_to_minkowski,
)
from pcseg.sparse.backends import (
    ENV_VAR,
    BackendUnavailableError,
    get_backend,
)


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


@pytest.mark.skipif(not HAS_ME, reason="MinkowskiEngine not installed")
@pytest.mark.parametrize("train", [True, False])
def test_minkunet_minkowski_equals_torch(train):
    """The same MinkUNet on MinkowskiEngine 0.5.4 (CPU) gives pcseg's logits and gradients."""
    ref, alt = _model_pair("minkowski", state_dict_to_minkowski)
    _check_same_outputs_and_grads(ref, alt, state_dict_from_minkowski, train)
