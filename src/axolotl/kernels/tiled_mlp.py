"""Run a position-wise module (a transformer MLP) over slices of the sequence, so that at most one
slice's intermediate activations exist at a time, in forward and in backward.

For a 16k-token row of a model with intermediate size 8192 the MLP's gate/up activations are
16k x 8192 x 2 bytes = 256 MiB each per layer, and autograd keeps several of them. Each slice
here runs under non-reentrant activation checkpointing: forward keeps only the slice's input
(a view of the layer input, which exists anyway), backward recomputes one slice at a time. The
result is exact: the MLP acts on each token independently, so slicing only changes the order of
the per-token computations (the parameter gradients are summed over slices instead of inside
one GEMM, a rounding-level difference). The price is one extra MLP forward per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint


def default_num_shards(sequence_length: int, hidden_size: int) -> int:
    """ceil(sequence / hidden): the slices are about as long as the model is wide, which keeps each
    slice's GEMMs large enough to run at full speed (the reference's rule)."""
    return max(1, -(-sequence_length // max(1, hidden_size)))


def tiled_forward(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, num_shards: int) -> torch.Tensor:
    """`forward(x)` computed over `num_shards` slices of dim -2 (the sequence) of x (..., seq, dim)."""
    num_shards = min(num_shards, x.shape[-2])
    if num_shards <= 1:
        return forward(x)
    shards = x.tensor_split(num_shards, dim=-2)
    if not torch.is_grad_enabled():
        return torch.cat([forward(shard) for shard in shards], dim=-2)
    return torch.cat([checkpoint(forward, shard, use_reentrant=False) for shard in shards], dim=-2)
