"""Where strided EBFT puts its rollouts in one sequence, and who may attend to whom.

A document of S tokens gets anchors (`place_anchors`). At each anchor a, the model writes
`generate_max_len` (G) tokens in place of the document's own x[a : a+G], having seen only the
`context_length` (c) document tokens before it. All rollouts of one document live in a single
row, after the document itself:

    [ doc 0 .. S-1 | sample 0: block 0 (G) | block 1 | ... | sample 1: block 0 | ... ]

The reference ("ground truth") is laid out the same way as one more sample whose blocks hold
x[a : a+G], so the feature network sees generated and reference blocks under the same mask. A
block token at step j of the block at anchor a has position id a + j: to the model it continues
the document at the anchor.

The attention rule (`StridedLayout.allowed`):
* a document token attends to the document tokens at or before it (plain causal attention);
* a block token attends to its anchor's context window, document tokens a-c .. a-1, and to the
  tokens of its own block at or before it;
* nothing attends to another block, and no document token attends to any block.
The same rule, written once, builds the dense additive mask and the flex_attention BlockMask.
During generation the blocks are fed step by step (all blocks' step j together), so in the KV
cache the block tokens are interleaved; the rule compares (block, step) pairs, not positions, and
holds for either order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

FLEX_BLOCK = 128
"""flex_attention works on 128-token tiles; the index tables are padded to a multiple of it."""


def place_anchors(length: int, prompt_length: int, stride: int, context_length: int, generate_max_len: int,
                  min_completion_prefix: int) -> list[int]:
    """Anchor positions of a document of `length` tokens.

    The first anchor is the latest of: `context_length` (every block gets its whole context
    window), `prompt_length + min_completion_prefix` (no rollout replaces prompt tokens or the
    first tokens of the answer) and 1. Then one every `stride` tokens while the reference block
    x[a : a+G] still fits in the document."""
    first = max(context_length, prompt_length + min_completion_prefix, 1)
    return list(range(first, length - generate_max_len + 1, stride))


@dataclass
class StridedLayout:
    """Index tables of one row: a document plus `samples` sets of blocks (see the module docstring).

    For every position p of the row: `block[p]` (-1 for document tokens, else sample x B + anchor
    number), `step[p]` (document: its index; block: j), `lo[p]`/`hi[p]` (block: its context window
    [a-c, a); document: unused) and `position_ids[p]`."""

    doc_len: int
    anchors: torch.Tensor
    generate_max_len: int
    context_length: int
    samples: int
    block: torch.Tensor
    step: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    position_ids: torch.Tensor

    @classmethod
    def build(cls, doc_len: int, anchors: list[int] | torch.Tensor, generate_max_len: int, context_length: int,
              samples: int, device: torch.device | str = "cpu", step_major: bool = False) -> StridedLayout:
        """`step_major=False`: each block's G tokens together (training and features);
        `step_major=True`: step 0 of every block, then step 1, ... (the order generation feeds them)."""
        anchors = torch.as_tensor(anchors, dtype=torch.long, device=device)
        num_blocks, steps = samples * len(anchors), generate_max_len
        block_ids = torch.arange(num_blocks, device=device)
        step_ids = torch.arange(steps, device=device)
        if step_major:
            block_part, step_part = block_ids.repeat(steps), step_ids.repeat_interleave(num_blocks)
        else:
            block_part, step_part = block_ids.repeat_interleave(steps), step_ids.repeat(num_blocks)
        doc = torch.arange(doc_len, device=device)
        anchor_of = anchors.repeat(samples)[block_part] if len(anchors) else block_part
        block = torch.cat([torch.full_like(doc, -1), block_part])
        step = torch.cat([doc, step_part])
        hi = torch.cat([torch.zeros_like(doc), anchor_of])
        lo = torch.cat([torch.zeros_like(doc), (anchor_of - context_length).clamp(min=0)])
        position_ids = torch.cat([doc, anchor_of + step_part])
        return cls(doc_len, anchors, generate_max_len, context_length, samples, block, step, lo, hi, position_ids)

    @property
    def length(self) -> int:
        return int(self.block.shape[0])

    @property
    def num_anchors(self) -> int:
        return int(self.anchors.shape[0])

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Whether query position q may attend to key position k (broadcasting index tensors)."""
        q_block, k_block = self.block[q], self.block[k]
        q_step, k_step = self.step[q], self.step[k]
        k_doc = k_block < 0
        causal_doc = (q_block < 0) & k_doc & (k_step <= q_step)
        window = (q_block >= 0) & k_doc & (k_step >= self.lo[q]) & (k_step < self.hi[q])
        own_block = (q_block >= 0) & (k_block == q_block) & (k_step <= q_step)
        return causal_doc | window | own_block

    def dense_mask(self, dtype: torch.dtype, queries: torch.Tensor | None = None) -> torch.Tensor:
        """(1, 1, Q, L) mask: boolean (True = attend) for `dtype=torch.bool`, else additive (0 where
        allowed, the dtype's minimum elsewhere). `queries`: the positions asking (default: all),
        e.g. the block tokens fed at one generation step."""
        q = torch.arange(self.length, device=self.block.device) if queries is None else queries
        ok = self.allowed(q[:, None], torch.arange(self.length, device=self.block.device)[None, :])
        if dtype == torch.bool:
            return ok[None, None]
        mask = torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, torch.finfo(dtype).min)
        return mask[None, None]

    def block_mask(self, batch: int = 1) -> Any:
        """The same rule as a flex_attention BlockMask over the whole row (fully masked tiles are
        skipped by the kernel, so the cost follows the attended pairs, not L^2)."""
        from torch.nn.attention.flex_attention import create_block_mask

        padded = -(-self.length // FLEX_BLOCK) * FLEX_BLOCK
        extra = padded - self.length
        table = _padded(self, extra)

        def mask_mod(b: Any, h: Any, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return table.allowed(q, k)

        return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=self.length, KV_LEN=self.length,
                                 device=self.block.device)

    def block_positions(self, sample: int) -> torch.Tensor:
        """(anchors, G) row positions of the block tokens of `sample` (block-major layout only)."""
        starts = self.doc_len + (sample * self.num_anchors + torch.arange(self.num_anchors, device=self.block.device)) \
            * self.generate_max_len
        return starts[:, None] + torch.arange(self.generate_max_len, device=self.block.device)[None, :]

    def predicting_positions(self, sample: int) -> torch.Tensor:
        """(anchors, G) positions whose output predicts each block token: the document token just
        before the anchor for step 0, the previous block token after that."""
        blocks = self.block_positions(sample)
        return torch.cat([(self.anchors - 1)[:, None], blocks[:, :-1]], dim=1)

    def window_positions(self, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchors, c + G) positions of each block's context window followed by its tokens, and a
        bool mask of which are real (a window cut by the document start is shorter)."""
        offsets = torch.arange(-self.context_length, 0, device=self.block.device)
        context = self.anchors[:, None] + offsets[None, :]
        valid = torch.cat([context >= 0, torch.ones(self.num_anchors, self.generate_max_len, dtype=torch.bool,
                                                    device=self.block.device)], dim=1)
        return torch.cat([context.clamp(min=0), self.block_positions(sample)], dim=1), valid


def _padded(layout: StridedLayout, extra: int) -> StridedLayout:
    """`layout` with `extra` trailing padding positions (their own block, attending only to
    themselves), so flex_attention may index its tables past the row's end."""
    if not extra:
        return layout
    device = layout.block.device
    pad_block = torch.arange(extra, device=device) + int(layout.block.max().item()) + 1 + layout.length
    zeros = torch.zeros(extra, dtype=torch.long, device=device)
    return StridedLayout(layout.doc_len, layout.anchors, layout.generate_max_len, layout.context_length,
                         layout.samples, torch.cat([layout.block, pad_block]), torch.cat([layout.step, zeros]),
                         torch.cat([layout.lo, zeros]), torch.cat([layout.hi, zeros]),
                         torch.cat([layout.position_ids, zeros]))
