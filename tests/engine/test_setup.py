"""pcseg.engine.setup: torch_globals (set and restored, also after an error), device and
autocast policy, seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pcseg.engine.setup import (
    autocast_factory,
    autocast_policy,
    device_kind,
    resolve_device,
    seed_everything,
    set_deterministic,
    torch_globals,
)


def _state() -> tuple:
    return (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )


def test_torch_globals_sets_the_state_and_restores_it():
    before = _state()
    with torch_globals(threads=2, deterministic=True):
        assert torch.get_num_threads() == 2
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert _state() == before


def test_torch_globals_restores_after_an_exception():
    before = _state()
    with pytest.raises(RuntimeError, match="boom"):
        with torch_globals(threads=3, deterministic=True):
            assert torch.get_num_threads() == 3
            raise RuntimeError("boom")
    assert _state() == before


def test_torch_globals_restores_state_changed_inside_the_block():
    """Whatever the block does to the globals (e.g. set_deterministic by hand) is undone."""
    with torch_globals():  # outer guard: the test leaves the process as it found it
        torch.use_deterministic_algorithms(True)  # warn_only False
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
        before = _state()
        assert before[1:] == (True, False, False, True)
        with torch_globals(deterministic=False):
            assert not torch.are_deterministic_algorithms_enabled()
            torch.set_num_threads(before[0] + 1)
            set_deterministic(True)
        assert _state() == before


def test_torch_globals_without_arguments_changes_nothing():
    before = _state()
    with torch_globals():
        assert _state() == before
    with torch_globals(threads=None, deterministic=None):
        assert _state() == before


def test_resolve_device_rules():
    assert resolve_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train.device: 'cuda:1' pins every one of the 2 ranks"):
        resolve_device("cuda:1", 0, 2)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda", 0, 1)
        with pytest.raises(RuntimeError, match="'cuda:0' but CUDA is not available"):
            resolve_device("cuda:0", 0, 1)
        assert resolve_device("auto", 3, 4) == torch.device("cpu")
        assert device_kind("auto") == "cpu"
    else:
        assert resolve_device("auto", 0, 1) == torch.device("cuda", 0)
        assert resolve_device("cuda", 1, 2) == torch.device("cuda", 1)
        assert device_kind("auto") == "cuda"
    assert device_kind("cuda") == device_kind("cuda:1") == "cuda" and device_kind("cpu") == "cpu"


@pytest.mark.parametrize("available", [False, True])
def test_device_kind_follows_cuda_availability_for_auto(monkeypatch, available):
    """The one rule trainer and workflows.runs set the process group up with."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert device_kind("auto") == ("cuda" if available else "cpu")
    assert device_kind("cuda") == device_kind("cuda:3") == "cuda"
    assert device_kind("cpu") == "cpu"


def test_autocast_policy():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_policy(True, "bf16", cpu) == (True, torch.bfloat16)
    assert autocast_policy(False, "bf16", cpu) == (False, torch.bfloat16)
    assert autocast_policy(False, "fp16", cpu) == (False, torch.float16)  # off: no complaint
    assert autocast_policy(True, "fp16", gpu) == (True, torch.float16)
    assert autocast_policy(True, "bf16", gpu) == (True, torch.bfloat16)
    with pytest.raises(ValueError, match=r"train.amp_dtype: 'fp16' autocast needs CUDA; on cpu"):
        autocast_policy(True, "fp16", cpu)


def test_autocast_factory_gives_fresh_contexts():
    a, b = torch.ones(4, 4), torch.ones(4, 4)
    on = autocast_factory(True, torch.bfloat16, torch.device("cpu"))
    for _ in range(2):  # reusable: a new context each call
        with on():
            assert (a @ b).dtype == torch.bfloat16
    with autocast_factory(False, torch.bfloat16, torch.device("cpu"))():
        assert (a @ b).dtype == torch.float32


def test_seed_everything_reproduces_every_stream():
    def draw() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first
    seed_everything(2**40 + 5)  # NumPy's seed is taken modulo 2**32
    assert np.random.get_state()[1][0] == np.random.RandomState(5).get_state()[1][0]
