"""`fix_untrained_tokens`: give embedding rows that were never trained a sensible starting point.

Checkpoints often ship rows that no training step ever touched: reserved special tokens
(`<|reserved_special_token_N|>`), chat-template markers added to a base model, vocabulary padding.
Such rows hold zeros or initialisation noise; a dataset that uses one of those tokens then starts
from a vector unlike every real token, and its loss spikes (or the output row, when tied weights
are zero, never gets picked). Setting the listed rows to the mean of the trained rows puts them
in the middle of the learned distribution, as if they were an average token.

The mean is taken, in float32, over every other row of the matrix except rows that are themselves
untrained (all values within `eps` of zero), so vocabulary padding does not pull it towards zero.
It is applied to the input embeddings and, when they are separate weights, to the output head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

EPS = 1e-16
"""Rows whose largest absolute value is at most this count as untrained (zero)."""


def fix_untrained_tokens(model: PreTrainedModel, token_ids: int | list[int]) -> list[int]:
    """Set the rows `token_ids` of the input embeddings and the (untied) output head to the mean of
    the trained rows; returns the ids, sorted. Ids outside the embedding matrix are an error."""
    ids = sorted({token_ids} if isinstance(token_ids, int) else set(token_ids))
    embeddings = model.get_input_embeddings().weight
    size = embeddings.shape[0]
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(f"`fix_untrained_tokens`: {bad} are not token ids of this model (its embeddings have "
                         f"{size} rows, ids 0..{size - 1})")
    if not ids:
        return ids
    weights = [embeddings]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not embeddings and head.weight.shape[0] == size:
        weights.append(head.weight)
    for weight in weights:
        _set_to_trained_mean(weight, ids)
    return ids


@torch.no_grad()
def _set_to_trained_mean(weight: torch.Tensor, ids: list[int]) -> None:
    if not weight.dtype.is_floating_point:
        raise ValueError(f"`fix_untrained_tokens`: the embedding weights are {weight.dtype} (quantised?); "
                         f"only floating-point embeddings can be adjusted")
    values = weight.detach().float()
    trained = values.abs().amax(dim=1) > EPS
    trained[ids] = False
    if not bool(trained.any()):
        raise ValueError("`fix_untrained_tokens`: every other embedding row is zero, so there is no trained "
                         "row to take the mean of")
    mean = values[trained].mean(dim=0)
    weight[ids] = mean.to(weight.dtype)
