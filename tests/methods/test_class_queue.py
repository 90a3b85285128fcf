"""Per-class FIFO ring buffers: order, wrap-around, masked pushes, identical across DDP ranks."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from pcseg.methods.class_queue import ClassQueues


def test_queue_fifo_and_wraparound():
    cap, dim = 5, 2
    q = ClassQueues(3, cap, dim)
    arrived: list[list[float]] = []
    counter = 0
    for n in (3, 4, 1, 0, 2, 7, 3):
        keys = torch.tensor(
            [[counter + i, -(counter + i)] for i in range(n)], dtype=torch.float32
        ).reshape(n, dim)
        counter += n
        q.push(1, keys)
        arrived.extend(keys.tolist())
        expect = arrived[-cap:]
        assert q.ordered(1).tolist() == expect
        assert int(q.count[1]) == len(expect)
        # ring invariant: the slot at ptr holds the oldest key once full
        if int(q.count[1]) == cap:
            assert q.keys[1, int(q.ptr[1])].tolist() == expect[0]
    assert int(q.count[0]) == 0 and int(q.count[2]) == 0
    assert float(q.fill_fraction()) == pytest.approx((0 + 1 + 0) / 3)
    with pytest.raises(ValueError, match="keys must be"):
        q.push(0, torch.zeros(2, 3))


def test_push_masked_matches_per_class_loop():
    q1, q2 = ClassQueues(4, 6, 3), ClassQueues(4, 6, 3)
    for _ in range(3):
        keys = torch.randn(9, 3)
        mask = torch.rand(9, 4) < 0.4
        pushed = q1.push_masked(keys, mask)
        for c in range(4):
            rows = [keys[i] for i in range(9) if bool(mask[i, c])]
            if rows:
                q2.push(c, torch.stack(rows))
        assert pushed.tolist() == mask.sum(0).tolist()
    for c in range(4):
        assert torch.equal(q1.ordered(c), q2.ordered(c))


def _ddp_worker(rank: int, world: int, path: str, result_path: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        q = ClassQueues(3, 8, 2)
        g = torch.Generator().manual_seed(rank)
        n = 3 + 2 * rank  # different row counts per rank
        keys = torch.randn(n, 2, generator=g) + 100 * rank
        mask = torch.rand(n, 3, generator=g) < 0.7
        pushed = q.push_masked(keys, mask)
        torch.save(
            {"keys": keys, "mask": mask, "q": q.state_dict(), "pushed": pushed},
            f"{result_path}.{rank}",
        )
    finally:
        dist.destroy_process_group()


def test_queues_identical_across_ranks_gloo():
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init")
        res = os.path.join(tmp, "res")
        mp.spawn(_ddp_worker, args=(2, init, res), nprocs=2, join=True)
        r0, r1 = (torch.load(f"{res}.{r}", weights_only=False) for r in range(2))
    for key in ("keys", "ptr", "count"):
        assert torch.equal(r0["q"][key], r1["q"][key])
    ref = ClassQueues(3, 8, 2)
    for c in range(3):
        rows = [r["keys"][r["mask"][:, c]] for r in (r0, r1)]
        ref.push(c, torch.cat(rows))
    assert torch.equal(ref.keys, r0["q"]["keys"]) and torch.equal(ref.count, r0["q"]["count"])
