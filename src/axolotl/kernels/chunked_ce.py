"""Cross-entropy through the output projection without full-vocabulary logits for the whole row.

A 4096-token row of a 128k-vocabulary model has 0.5 G logits: 1 GiB in bf16 plus 2 GiB for the
fp32 copy the loss needs, and as much again for their gradient. Here the rows are cut into
chunks; for each chunk the logits are computed, turned into the loss *and* the gradient with
respect to the logits at once (softmax minus the one-hot target), and immediately multiplied back
into the gradients of the hidden states and of the projection weight. Only one chunk's logits
exist at a time; backward only scales the stored gradients by the incoming one.

`linear_cross_entropy_reference` is the plain formula the chunked path is tested against.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch

IGNORE_INDEX = -100
DEFAULT_NUM_CHUNKS = 8


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Sum over supervised positions of -log softmax(hidden @ weight.T)[label], logits in fp32
    (what transformers' causal-LM loss computes before dividing by the token count)."""
    logits = (hidden @ weight.t()).float()
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")


def _chunk_loss_and_logit_grad(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                               grad_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss sum of one chunk and d(loss sum)/d(logits), computed in place on the fp32 logits."""
    logits = logits.float()
    valid = labels != ignore_index
    targets = torch.where(valid, labels, 0)
    log_normaliser = torch.logsumexp(logits, dim=-1)
    target_logits = logits.gather(1, targets[:, None])[:, 0]
    loss = ((log_normaliser - target_logits) * valid).sum()
    probabilities = logits.sub_(log_normaliser[:, None]).exp_()
    probabilities.scatter_add_(1, targets[:, None], -torch.ones_like(target_logits)[:, None])
    probabilities.mul_(valid[:, None])
    return loss, probabilities.to(grad_dtype)


ChunkMath = Callable[[torch.Tensor, torch.Tensor, int, torch.dtype], tuple[torch.Tensor, torch.Tensor]]


@functools.cache
def _compiled_chunk_math() -> ChunkMath:
    """Compiled once per process; chunk shapes repeat, so it rarely recompiles."""
    return torch.compile(_chunk_loss_and_logit_grad, dynamic=False)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Gradients are produced in forward (that is what lets each chunk's logits be freed)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,  # type: ignore[override]
                num_chunks: int, ignore_index: int, chunk_math: ChunkMath) -> torch.Tensor:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        chunk = max(1, -(-hidden.shape[0] // max(1, num_chunks)))
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            hidden_chunk = hidden[rows]
            chunk_loss, logit_grad = chunk_math(hidden_chunk @ weight.t(), labels[rows], ignore_index, hidden.dtype)
            loss += chunk_loss
            if grad_hidden is not None:
                torch.matmul(logit_grad, weight.to(logit_grad.dtype), out=grad_hidden[rows])
            if grad_weight is not None:
                grad_weight.addmm_(logit_grad.t().to(weight.dtype), hidden_chunk.to(weight.dtype))
        ctx.save_for_backward(*(g for g in (grad_hidden, grad_weight) if g is not None))
        ctx.has = (need_hidden, need_weight)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        grads: list[torch.Tensor | None] = []
        for needed in ctx.has:
            gradient = saved.pop(0) if needed else None
            grads.append(None if gradient is None else gradient * grad_loss.to(gradient.dtype))
        return grads[0], grads[1], None, None, None, None


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                 num_chunks: int = DEFAULT_NUM_CHUNKS,
                                 ignore_index: int = IGNORE_INDEX, compiled: bool = False) -> torch.Tensor:
    """Sum of the token losses of `hidden` (tokens, dim) projected by `weight` (vocab, dim) against
    `labels` (tokens,), in fp32, never holding more than one chunk's logits.

    `compiled` fuses each chunk's softmax arithmetic with torch.compile (a few full passes over the
    chunk's logits become one or two kernels); on CPU or without a compiler it should stay False."""
    if hidden.dim() != 2 or labels.shape != hidden.shape[:1]:
        raise ValueError(f"expected hidden (tokens, dim) and labels (tokens,), got {tuple(hidden.shape)} "
                         f"and {tuple(labels.shape)}")
    chunk_math = _compiled_chunk_math() if compiled else _chunk_loss_and_logit_grad
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, labels, num_chunks, ignore_index, chunk_math)
