"""Per-class FIFO ring buffers of keys (U2PL's negative-key memory).

Memory: the queues are ``K * capacity * R * 4`` bytes of float32 buffers saved with every
checkpoint (U2PL's default ``queue_capacity = 10000`` and ``rep_dim = 64``: 13 classes ->
33 MB, 20 classes -> 51 MB). Under DDP :meth:`ClassQueues.push_masked` all-gathers the
keys of all ranks first (rank order), so the queues stay identical on every rank.
"""

from __future__ import annotations

import torch
from torch import nn

from pcseg.distributed import all_gather_rows


class ClassQueues(nn.Module):
    """Per-class FIFO ring buffers of keys with bounded memory.

    Buffers (saved in the state dict): ``keys`` (K, capacity, R) float32, ``ptr`` (K,)
    int64 next write position, ``count`` (K,) int64 number of valid keys (<= capacity).
    While ``count < capacity`` the valid keys are ``keys[c, :count]``; once full every slot
    is valid and the oldest key sits at ``ptr``.
    """

    keys: torch.Tensor
    ptr: torch.Tensor
    count: torch.Tensor

    def __init__(self, num_classes: int, capacity: int, dim: int) -> None:
        super().__init__()
        if int(capacity) < 1 or int(dim) < 1 or int(num_classes) < 1:
            raise ValueError(
                f"ClassQueues: num_classes, capacity and dim must be >= 1, got "
                f"{num_classes}, {capacity}, {dim}"
            )
        self.num_classes = int(num_classes)
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.register_buffer("keys", torch.zeros(self.num_classes, self.capacity, self.dim))
        self.register_buffer("ptr", torch.zeros(self.num_classes, dtype=torch.int64))
        self.register_buffer("count", torch.zeros(self.num_classes, dtype=torch.int64))

    @torch.no_grad()
    def push(self, c: int, new_keys: torch.Tensor) -> None:
        """Append (n, R) keys to class c's queue (oldest keys are overwritten first)."""
        if new_keys.dim() != 2 or new_keys.shape[1] != self.dim:
            raise ValueError(
                f"ClassQueues.push: keys must be (n, {self.dim}), got {tuple(new_keys.shape)}"
            )
        if not 0 <= int(c) < self.num_classes:
            raise ValueError(f"ClassQueues.push: class {c} out of range [0, {self.num_classes})")
        n = new_keys.shape[0]
        if n == 0:
            return
        cap = self.capacity
        buf = self.keys[c]
        new_keys = new_keys.detach().to(device=buf.device, dtype=buf.dtype)
        if n >= cap:
            buf.copy_(new_keys[n - cap :])
            self.ptr[c] = 0
            self.count[c] = cap
            return
        p = int(self.ptr[c])
        end = p + n
        if end <= cap:
            buf[p:end] = new_keys
        else:
            first = cap - p
            buf[p:] = new_keys[:first]
            buf[: n - first] = new_keys[first:]
        self.ptr[c] = end % cap
        self.count[c] = min(int(self.count[c]) + n, cap)

    @torch.no_grad()
    def push_masked(
        self, keys: torch.Tensor, mask: torch.Tensor, gather: bool = True
    ) -> torch.Tensor:
        """Push ``keys[mask[:, c]]`` to every class c, keeping the row order.

        Args:
            keys: (N, R) keys (detached).
            mask: (N, K) bool.
            gather: all-gather (keys, mask) rows over ranks first (rank order) so every
                rank pushes the same keys; a collective, call it on every rank.
        Returns:
            (K,) int64 number of keys pushed per class (after gathering).
        """
        if mask.shape != (keys.shape[0], self.num_classes):
            raise ValueError(
                f"ClassQueues.push_masked: mask must be ({keys.shape[0]}, {self.num_classes}), "
                f"got {tuple(mask.shape)}"
            )
        keys = keys.detach().to(self.keys.dtype)
        any_c = mask.any(1)
        rows = torch.cat([keys[any_c], mask[any_c].to(keys.dtype)], dim=1)
        if gather:
            rows = all_gather_rows(rows)
        keys, mask = rows[:, : self.dim], rows[:, self.dim :] > 0.5
        pushed = mask.sum(0).to(torch.int64)
        for c in range(self.num_classes):
            if int(pushed[c]) > 0:
                self.push(c, keys[mask[:, c]])
        return pushed

    def ordered(self, c: int) -> torch.Tensor:
        """(count_c, R) keys of class c from oldest to newest."""
        n = int(self.count[c])
        if n < self.capacity:
            return self.keys[c, :n]
        p = int(self.ptr[c])
        return torch.cat([self.keys[c, p:], self.keys[c, :p]], dim=0)

    def fill_fraction(self) -> torch.Tensor:
        """0-dim float: mean over classes of count / capacity."""
        return (self.count.to(torch.float32) / self.capacity).mean()
