"""Strided EBFT's row layout and attention mask (`axolotl.training.ebft_layout`) on small grids,
against matrices written out by hand."""

from __future__ import annotations

import torch

from axolotl.training.ebft_layout import StridedLayout, place_anchors

# doc of 6 tokens, anchors 2 and 4 (stride 2), context 2, 2 generated tokens per block, 1 sample:
# positions 0-5 document, 6-7 block at anchor 2, 8-9 block at anchor 4
X, _ = 1, 0
EXPECTED = torch.tensor([
    # keys: 0  1  2  3  4  5  6  7  8  9
    [X, _, _, _, _, _, _, _, _, _],  # doc 0: causal
    [X, X, _, _, _, _, _, _, _, _],  # doc 1
    [X, X, X, _, _, _, _, _, _, _],  # doc 2
    [X, X, X, X, _, _, _, _, _, _],  # doc 3
    [X, X, X, X, X, _, _, _, _, _],  # doc 4
    [X, X, X, X, X, X, _, _, _, _],  # doc 5: never a block token
    [X, X, _, _, _, _, X, _, _, _],  # anchor 2, step 0: window 0-1, itself
    [X, X, _, _, _, _, X, X, _, _],  # anchor 2, step 1: window, its block so far
    [_, _, X, X, _, _, _, _, X, _],  # anchor 4, step 0: window 2-3 only, not the other block
    [_, _, X, X, _, _, _, _, X, X],  # anchor 4, step 1
], dtype=torch.bool)


def small_layout(**kwargs: object) -> StridedLayout:
    return StridedLayout.build(6, [2, 4], generate_max_len=2, context_length=2, **kwargs)  # type: ignore[arg-type]


def dense_bool(layout: StridedLayout) -> torch.Tensor:
    return layout.dense_mask(torch.float32)[0, 0] == 0


def test_anchor_placement() -> None:
    assert place_anchors(6, 0, stride=2, context_length=2, generate_max_len=2, min_completion_prefix=0) == [2, 4]
    # prompt of 5 tokens and 3 more into the answer: first anchor 8; the last block must fit (a + 4 <= 20)
    assert place_anchors(20, 5, stride=3, context_length=2, generate_max_len=4, min_completion_prefix=3) == \
        [8, 11, 14]
    assert place_anchors(20, 0, stride=8, context_length=8, generate_max_len=8, min_completion_prefix=0) == [8]
    assert place_anchors(10, 0, stride=1, context_length=0, generate_max_len=8, min_completion_prefix=0) == [1, 2]
    assert place_anchors(7, 0, stride=1, context_length=8, generate_max_len=8, min_completion_prefix=0) == []


def test_mask_allows_exactly_causal_doc_window_and_own_block() -> None:
    layout = small_layout(samples=1)
    assert torch.equal(dense_bool(layout), EXPECTED)
    assert layout.position_ids.tolist() == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5]
    mask = layout.dense_mask(torch.bfloat16)
    assert mask.shape == (1, 1, 10, 10) and mask.dtype == torch.bfloat16
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.bfloat16).min}


def test_samples_of_the_same_anchor_do_not_see_each_other() -> None:
    layout = StridedLayout.build(3, [2], generate_max_len=1, context_length=1, samples=2)
    # positions: doc 0-2, sample 0 block at 3, sample 1 block at 4 (both at anchor 2, window [1, 2))
    expected = torch.tensor([[X, _, _, _, _], [X, X, _, _, _], [X, X, X, _, _],
                             [_, X, _, X, _], [_, X, _, _, X]], dtype=torch.bool)
    assert torch.equal(dense_bool(layout), expected)
    assert layout.block_positions(1).tolist() == [[4]]


def test_step_major_order_keeps_the_same_rule() -> None:
    # generation feeds step 0 of both blocks (positions 6, 7), then step 1 (8, 9)
    layout = small_layout(samples=1, step_major=True)
    assert layout.position_ids.tolist() == [0, 1, 2, 3, 4, 5, 2, 4, 3, 5]
    got = dense_bool(layout)
    assert got[8].tolist() == [True, True, False, False, False, False, True, False, True, False]
    assert got[9].tolist() == [False, False, True, True, False, False, False, True, False, True]
    queries = torch.tensor([8, 9])
    assert torch.equal(layout.dense_mask(torch.float32, queries)[0, 0] == 0, got[8:])


def test_positions_of_blocks_predictions_and_windows() -> None:
    layout = StridedLayout.build(6, [2, 4], generate_max_len=2, context_length=3, samples=2)
    assert layout.block_positions(0).tolist() == [[6, 7], [8, 9]]
    assert layout.block_positions(1).tolist() == [[10, 11], [12, 13]]
    # step 0 of the block at anchor 2 is predicted by document token 1, step 1 by the block's step 0
    assert layout.predicting_positions(1).tolist() == [[1, 10], [3, 12]]
    windows, valid = layout.window_positions(0)
    assert windows.tolist() == [[0, 0, 1, 6, 7], [1, 2, 3, 8, 9]]  # anchor 2 has only 2 tokens before it
    assert valid.tolist() == [[False, True, True, True, True], [True] * 5]


def test_flex_block_mask_attends_like_the_dense_mask() -> None:
    from torch.nn.attention.flex_attention import flex_attention

    layout = StridedLayout.build(150, [10, 60, 140], generate_max_len=4, context_length=5, samples=2)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, layout.length, 8, generator=generator) for _ in range(3))
    flex = flex_attention(q, k, v, block_mask=layout.block_mask())
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=layout.dense_mask(torch.float32))
    assert torch.allclose(flex, dense, atol=1e-5)
