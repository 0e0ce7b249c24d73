"""The chunked linear cross-entropy against the plain formula: loss and both gradients."""

from __future__ import annotations

import pytest
import torch

from axolotl.kernels.chunked_ce import IGNORE_INDEX, chunked_linear_cross_entropy, linear_cross_entropy_reference


def _inputs(tokens: int, dim: int, vocab: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, dim, generator=generator).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=generator) / dim**0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), generator=generator)
    labels[::3] = IGNORE_INDEX
    return hidden, weight, labels


def _loss_and_grads(fn, hidden, weight, labels, **kwargs):
    hidden = hidden.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    loss = fn(hidden, weight, labels, **kwargs)
    (loss * 0.37).backward()  # a non-unit upstream gradient must scale both gradients
    return loss.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize("num_chunks", [1, 3, 8, 64])
def test_fp32_matches_reference(num_chunks: int) -> None:
    hidden, weight, labels = _inputs(50, 16, 97, torch.float32)
    expected = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, labels)
    actual = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, labels, num_chunks=num_chunks)
    for want, got in zip(expected, actual):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_bf16_matches_reference_within_bf16_rounding() -> None:
    hidden, weight, labels = _inputs(64, 32, 257, torch.bfloat16)
    expected = _loss_and_grads(linear_cross_entropy_reference, hidden, weight, labels)
    actual = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, labels, num_chunks=4)
    assert actual[0].dtype == torch.float32
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-3, atol=1e-3)
    for want, got in zip(expected[1:], actual[1:]):
        assert got.dtype == torch.bfloat16
        # relative error of the gradient as a whole: a few bf16 ulps from chunked accumulation
        assert (got.float() - want.float()).norm() / want.float().norm() < 2e-2


def test_frozen_weight_gets_no_gradient() -> None:
    hidden, weight, labels = _inputs(20, 8, 31, torch.float32)
    weight = weight.detach()
    hidden = hidden.detach().requires_grad_()
    chunked_linear_cross_entropy(hidden, weight, labels, num_chunks=2).backward()
    reference_hidden = hidden.detach().clone().requires_grad_()
    linear_cross_entropy_reference(reference_hidden, weight, labels).backward()
    torch.testing.assert_close(hidden.grad, reference_hidden.grad)


def test_all_ignored_is_zero_loss_and_zero_gradient() -> None:
    hidden, weight, labels = _inputs(10, 8, 31, torch.float32)
    labels[:] = IGNORE_INDEX
    loss, grad_hidden, grad_weight = _loss_and_grads(chunked_linear_cross_entropy, hidden, weight, labels)
    assert loss.item() == 0.0
    assert grad_hidden.abs().max().item() == 0.0 and grad_weight.abs().max().item() == 0.0


def test_shape_errors_are_explained() -> None:
    hidden, weight, labels = _inputs(10, 8, 31, torch.float32)
    with pytest.raises(ValueError, match="expected hidden"):
        chunked_linear_cross_entropy(hidden[None], weight, labels)
