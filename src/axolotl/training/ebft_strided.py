"""Strided EBFT on one document: roll out, score with the feature network, and build the loss.

Read top to bottom, for a document x of S tokens (`ebft_layout` has the row layout and mask):

1. `rollout`: block-parallel sampling without gradients. The document is run once (causal, KV
   cache); the states just before every anchor give each block's first token; then G-1 steps
   feed all blocks' latest tokens together with a mask that keeps blocks apart. Each step is a
   forward over n x B new tokens only, with a small dense mask, so generation never needs the
   flex kernels (the policy is switched to SDPA meanwhile when it trains with flex_attention,
   whose compiled kernels would be rebuilt for every new cache length).
2. `policy_logprobs`: one forward of [document | all samples' blocks] with gradients; the
   log-probability of every sampled token (at the sampling temperature) and, for the CE term,
   of every supervised document token. Logits are computed `LOGIT_CHUNK` rows at a time under
   activation checkpointing, so at most one chunk of vocabulary-sized logits exists at once.
3. `block_features`: the frozen feature network over [document | samples' blocks | reference
   blocks]; per block, the states of its context window and its tokens, pooled (`ebft_reward`).
4. `strided_loss`: rewards per block (the n samples of an anchor are one group), advantages,
   and rl_coef x REINFORCE loss + ce_coef x cross-entropy. Generation and the update use the
   same weights, so the importance ratio is 1 and the policy gradient is plain REINFORCE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from axolotl.training.ebft_layout import StridedLayout
from axolotl.training.ebft_reward import (
    EmbedMethod,
    Estimator,
    RewardBreakdown,
    advantages,
    effective_estimator,
    feature_rewards,
    pool,
)

LOGIT_CHUNK = 1024
"""Rows of vocabulary-sized logits computed at once (policy log-probs and the CE term)."""
IGNORE_INDEX = -100


@dataclass(frozen=True)
class StridedSettings:
    """The `ebft:` keys strided mode reads, plus the feature-layer indices resolved for the model."""

    stride: int
    context_length: int
    generate_max_len: int
    samples: int
    temperature: float
    top_p: float
    estimator: Estimator
    alignment_coef: float
    diversity_coef: float
    use_whitening: bool
    embed_method: EmbedMethod
    layers: tuple[int, ...]
    rl_coef: float
    ce_coef: float
    min_completion_prefix: int


def decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The decoder body (returns hidden states) and the output projection of a causal LM, under a
    PEFT wrapper if there is one. Calling the body skips the full-sequence logits."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    return inner.get_decoder(), inner.get_output_embeddings()


@contextmanager
def attention_for_generation(model: Any) -> Iterator[None]:
    """SDPA while generating when the model trains with flex_attention (see the module docstring)."""
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    current = getattr(inner.config, "_attn_implementation", None)
    if current != "flex_attention":
        yield
        return
    inner.set_attn_implementation("sdpa")
    try:
        yield
    finally:
        inner.set_attn_implementation(current)


def attention_of(model: Any) -> str | None:
    get_base = getattr(model, "get_base_model", None)
    inner = get_base() if callable(get_base) else model
    return getattr(inner.config, "_attn_implementation", None)


def uses_flex(model: Any) -> bool:
    return attention_of(model) == "flex_attention"


def dense_mask_dtype(model: Any, head: Any) -> torch.dtype:
    """Boolean masks for SDPA (a float mask must match the query's dtype, which autocast changes);
    additive masks in the weights' dtype for the implementations that add them to the scores."""
    if attention_of(model) == "sdpa":
        return torch.bool
    return head.weight.dtype if hasattr(head, "weight") else torch.float32


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (..., V) logits: greedy at temperature 0, else softmax(logits / T)
    restricted to the smallest set of tokens whose probability reaches `top_p`."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    if top_p < 1.0:
        sorted_probs, order = flat.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        flat = torch.zeros_like(flat).scatter_(1, order, sorted_probs)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


@torch.no_grad()
def rollout(model: Any, doc: torch.Tensor, anchors: list[int], settings: StridedSettings,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """(samples, anchors, G) sampled tokens: at every anchor, G tokens continuing the context window."""
    from transformers import DynamicCache

    body, head = decoder_and_head(model)
    n, blocks, steps = settings.samples, len(anchors), settings.generate_max_len
    layout = StridedLayout.build(len(doc), anchors, steps, settings.context_length, n, device=doc.device,
                                 step_major=True)
    was_training = model.training
    model.eval()  # no dropout while sampling; checkpointing (training only) would also drop the cache
    try:
        with attention_for_generation(model):
            cache = DynamicCache(config=body.config)
            out = body(input_ids=doc[None], position_ids=layout.position_ids[None, :len(doc)], past_key_values=cache,
                       use_cache=True)
            first = head(out.last_hidden_state[0, layout.anchors - 1])  # (B, V), the same for every sample
            tokens = torch.empty(n, blocks, steps, dtype=torch.long, device=doc.device)
            tokens[:, :, 0] = sample_tokens(first.expand(n, -1, -1), settings.temperature, settings.top_p, generator)
            dtype = dense_mask_dtype(model, head)  # SDPA while generating (see attention_for_generation)
            for step in range(1, steps):
                fed = len(doc) + (step - 1) * n * blocks + torch.arange(n * blocks, device=doc.device)
                mask = layout.dense_mask(dtype, queries=fed)[..., : len(doc) + step * n * blocks]
                out = body(input_ids=tokens[:, :, step - 1].reshape(1, -1), position_ids=layout.position_ids[fed][None],
                           attention_mask=mask, past_key_values=cache, use_cache=True)
                logits = head(out.last_hidden_state[0]).reshape(n, blocks, -1)
                tokens[:, :, step] = sample_tokens(logits, settings.temperature, settings.top_p, generator)
    finally:
        model.train(was_training)
    return tokens


def chunked_logprobs(head: Any, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(head(hidden) / T)[target] for (M, H) states and (M,) targets, in fp32, one
    `LOGIT_CHUNK` at a time; each chunk's logits are recomputed in backward instead of kept."""
    scale = 1.0 / temperature if temperature > 0 else 1.0

    def chunk(states: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        logits = head(states).float() * scale
        return logits.gather(-1, wanted[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)

    parts = []
    for start in range(0, hidden.shape[0], LOGIT_CHUNK):
        states, wanted = hidden[start:start + LOGIT_CHUNK], targets[start:start + LOGIT_CHUNK]
        if torch.is_grad_enabled() and states.requires_grad:
            parts.append(checkpoint(chunk, states, wanted, use_reentrant=False))
        else:
            parts.append(chunk(states, wanted))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def _mask_for(model: Any, layout: StridedLayout, head: Any) -> Any:
    return layout.block_mask() if uses_flex(model) else layout.dense_mask(dense_mask_dtype(model, head))


def policy_logprobs(model: Any, doc: torch.Tensor, labels: torch.Tensor, layout: StridedLayout,
                    tokens: torch.Tensor, temperature: float, with_ce: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(samples, anchors, G) log-probs of the sampled tokens with gradients, and the summed
    log-probs of the supervised document tokens with the count of them (or None without CE)."""
    body, head = decoder_and_head(model)
    ids = torch.cat([doc, tokens.reshape(-1)])
    hidden = body(input_ids=ids[None], position_ids=layout.position_ids[None], use_cache=False,
                  attention_mask=_mask_for(model, layout, head)).last_hidden_state[0]
    predicting = torch.stack([layout.predicting_positions(s) for s in range(tokens.shape[0])])
    logps = chunked_logprobs(head, hidden[predicting.reshape(-1)], tokens.reshape(-1), temperature)
    ce = None
    if with_ce:
        supervised = (labels[1:] != IGNORE_INDEX).nonzero()[:, 0]
        ce = chunked_logprobs(head, hidden[supervised], doc[1:][supervised])
    return logps.reshape(tokens.shape), ce


@torch.no_grad()
def block_features(feature_model: Any, doc: torch.Tensor, anchors: list[int], tokens: torch.Tensor,
                   settings: StridedSettings, disable_adapter: bool) -> torch.Tensor:
    """(samples + 1, anchors, D) features of every sampled block and, last, of the reference blocks."""
    n, steps = tokens.shape[0], settings.generate_max_len
    layout = StridedLayout.build(len(doc), anchors, steps, settings.context_length, n + 1, device=doc.device)
    reference = doc[layout.anchors[:, None] + torch.arange(steps, device=doc.device)[None, :]]
    ids = torch.cat([doc, tokens.reshape(-1), reference.reshape(-1)])
    body, head = decoder_and_head(feature_model)
    switch = feature_model.disable_adapter() if disable_adapter else nullcontext()
    with switch:
        states = body(input_ids=ids[None], position_ids=layout.position_ids[None], use_cache=False,
                      attention_mask=_mask_for(feature_model, layout, head), output_hidden_states=True).hidden_states
    windows, valid = zip(*(layout.window_positions(s) for s in range(n + 1)))
    where = torch.stack(windows).reshape(-1, windows[0].shape[-1])  # ((n+1) x B, c + G)
    real = torch.stack(valid).reshape(where.shape)
    completion = torch.zeros_like(real)
    completion[:, -steps:] = True
    layers = [states[index][0][where] for index in settings.layers]
    return pool(layers, real, settings.embed_method, completion).reshape(n + 1, len(anchors), -1)


@dataclass
class StridedOutcome:
    """One document's loss terms and what the metrics report."""

    rl_sum: torch.Tensor
    """sum over sampled tokens of -advantage x log-prob."""
    rl_tokens: int
    ce_sum: torch.Tensor | None
    ce_tokens: int
    breakdown: RewardBreakdown | None


def strided_document(model: Any, feature_model: Any, disable_adapter: bool, doc: torch.Tensor, labels: torch.Tensor,
                     prompt_length: int, settings: StridedSettings,
                     generator: torch.Generator | None = None) -> StridedOutcome:
    """Roll out, score and build the loss terms of one unpadded document."""
    from axolotl.training.ebft_layout import place_anchors

    anchors = place_anchors(len(doc), prompt_length, settings.stride, settings.context_length,
                            settings.generate_max_len, settings.min_completion_prefix)
    with_ce = settings.ce_coef > 0
    if not anchors:  # too short for one block: only the CE term can learn from it
        ce = None
        if with_ce:
            body, head = decoder_and_head(model)
            hidden = body(input_ids=doc[None], use_cache=False).last_hidden_state[0]
            supervised = (labels[1:] != IGNORE_INDEX).nonzero()[:, 0]
            ce = -chunked_logprobs(head, hidden[supervised], doc[1:][supervised]).sum()
        return StridedOutcome(doc.new_zeros((), dtype=torch.float32), 0, ce, int((labels[1:] != IGNORE_INDEX).sum()),
                              None)
    tokens = rollout(model, doc, anchors, settings, generator)
    features = block_features(feature_model, doc, anchors, tokens, settings, disable_adapter)
    n = settings.samples
    diversity = settings.diversity_coef if n > 1 else 0.0  # one sample: no pairs to compare
    breakdown = feature_rewards(features[:n].transpose(0, 1), features[n], settings.alignment_coef, diversity,
                                settings.use_whitening)
    advantage = advantages(breakdown.rewards, effective_estimator(settings.estimator, n))  # (B, n)
    layout = StridedLayout.build(len(doc), anchors, settings.generate_max_len, settings.context_length, n,
                                 device=doc.device)
    logps, ce_logps = policy_logprobs(model, doc, labels, layout, tokens, settings.temperature, with_ce)
    rl_sum = -(advantage.transpose(0, 1)[:, :, None].to(logps.dtype) * logps).sum()
    ce_sum = -ce_logps.sum() if ce_logps is not None else None
    return StridedOutcome(rl_sum, logps.numel(), ce_sum, 0 if ce_logps is None else ce_logps.numel(), breakdown)
