"""Preallocated self-attention keys/values for the whole generation.

audiocraft's streaming attention appends each step's key/value with `torch.cat`, copying the
entire past every step (O(T^2) bytes over a generation; for 4 stems of 10 s that is tens of
GB of memory traffic on top of the weights). The total length is known before the first
step, so one buffer per layer is allocated up front and each step writes its slice in place.
Attention then reads a view of the filled prefix.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, num_layers: int, rows: int, heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        # [layer, key/value, row, head, time, head_dim]: per-layer slices are contiguous blocks,
        # and the time prefix of a slice is the same memory layout audiocraft's SDPA call sees.
        self._buffer = torch.empty((num_layers, 2, rows, heads, length, head_dim), dtype=dtype, device=device)
        self.length = length
        self.filled = 0

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store [rows, heads, steps, head_dim] at the current position; return the filled prefix."""
        steps = keys.shape[2]
        end = self.filled + steps
        if end > self.length:
            raise RuntimeError(f"KV cache overflow: {end} > {self.length} positions")
        self._buffer[layer, 0, :, :, self.filled:end] = keys
        self._buffer[layer, 1, :, :, self.filled:end] = values
        return self._buffer[layer, 0, :, :, :end], self._buffer[layer, 1, :, :, :end]

    def advance(self, steps: int) -> None:
        """Called once per model step, after every layer has appended."""
        self.filled += steps

    @property
    def nbytes(self) -> int:
        return self._buffer.numel() * self._buffer.element_size()
