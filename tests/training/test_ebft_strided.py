"""Strided EBFT's rollout, features and loss terms (`axolotl.training.ebft_strided`) on a tiny
random Llama: what generation samples is what the training forward scores, blocks cannot see
each other, the flex and dense masks agree, and the LoRA feature network is the base model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from axolotl.training import ebft_strided
from axolotl.training.ebft_layout import StridedLayout, place_anchors
from axolotl.training.ebft_strided import (
    StridedSettings,
    block_features,
    chunked_logprobs,
    decoder_and_head,
    rollout,
    sample_tokens,
    strided_document,
)

SETTINGS = StridedSettings(stride=4, context_length=3, generate_max_len=3, samples=3, temperature=1.0, top_p=1.0,
                           estimator="rloo", alignment_coef=1.0, diversity_coef=1.0, use_whitening=False,
                           embed_method="last_token", layers=(1, 2), rl_coef=1.0, ce_coef=0.0, min_completion_prefix=0)
DOC = torch.arange(5, 29)  # 24 tokens: anchors 3, 7, 11, 15, 19


def tiny(path: Path, attention: str = "sdpa") -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attention).eval()


def settings(**changes: Any) -> StridedSettings:
    return StridedSettings(**{**SETTINGS.__dict__, **changes})


def full_row_logits(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Logits at the positions predicting each sampled token, from one forward over the training layout."""
    anchors = place_anchors(len(DOC), 0, 4, 3, 3, 0)
    layout = StridedLayout.build(len(DOC), anchors, 3, 3, tokens.shape[0])
    body, head = decoder_and_head(model)
    hidden = body(input_ids=torch.cat([DOC, tokens.reshape(-1)])[None], position_ids=layout.position_ids[None],
                  attention_mask=layout.dense_mask(torch.float32)).last_hidden_state[0]
    predicting = torch.stack([layout.predicting_positions(s) for s in range(tokens.shape[0])])
    return head(hidden[predicting])


def test_greedy_rollout_is_what_the_training_layout_predicts(tiny_llama_dir: Path) -> None:
    """Generation (KV cache, step-major, small masks) and the training forward (one row, block-major)
    must see the same contexts: the greedy tokens are the argmax of the training forward's logits."""
    model = tiny(tiny_llama_dir)
    anchors = place_anchors(len(DOC), 0, 4, 3, 3, 0)
    assert anchors == [3, 7, 11, 15, 19]
    with torch.no_grad():
        tokens = rollout(model, DOC, anchors, settings(temperature=0.0))
        assert tokens.shape == (3, 5, 3)
        assert torch.equal(full_row_logits(model, tokens).argmax(dim=-1), tokens)


def test_sampled_tokens_are_scored_with_the_log_probs_they_were_sampled_from(tiny_llama_dir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the distributions `rollout` samples from; the training forward gives the same ones."""
    model = tiny(tiny_llama_dir)
    seen: list[torch.Tensor] = []
    original = ebft_strided.sample_tokens

    def recording(logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(logits.detach().clone())
        return original(logits, *args, **kwargs)

    monkeypatch.setattr(ebft_strided, "sample_tokens", recording)
    with torch.no_grad():
        tokens = rollout(model, DOC, [3, 7, 11, 15, 19], SETTINGS, torch.Generator().manual_seed(0))
        scored = full_row_logits(model, tokens)
    sampled_from = torch.stack([seen[0], *seen[1:]], dim=-2)  # (samples, anchors, steps, vocab)
    assert torch.allclose(scored, sampled_from, atol=1e-4)


def test_blocks_do_not_see_other_blocks_or_the_reference(tiny_llama_dir: Path) -> None:
    model = tiny(tiny_llama_dir)
    anchors = [3, 7, 11]
    tokens = torch.randint(5, 60, (3, 3, 3), generator=torch.Generator().manual_seed(1))
    base = block_features(model, DOC, anchors, tokens, SETTINGS, disable_adapter=False)
    changed = tokens.clone()
    changed[1] = (changed[1] + 7) % 60  # sample 1's every block
    changed[0, 2] = (changed[0, 2] + 3) % 60  # sample 0's last block
    other = block_features(model, DOC, anchors, changed, SETTINGS, disable_adapter=False)
    assert base.shape == (4, 3, 2 * 64)  # samples + reference, anchors, two layers of 64
    assert torch.allclose(other[0, :2], base[0, :2], atol=1e-5)  # sample 0's untouched blocks
    assert torch.allclose(other[2], base[2], atol=1e-5) and torch.allclose(other[3], base[3], atol=1e-5)
    assert not torch.allclose(other[1], base[1], atol=1e-3) and not torch.allclose(other[0, 2], base[0, 2], atol=1e-3)


def test_a_block_sampling_the_reference_tokens_has_the_reference_features(tiny_llama_dir: Path) -> None:
    model = tiny(tiny_llama_dir)
    reference = torch.stack([DOC[a:a + 3] for a in (3, 7)])  # (anchors, G)
    tokens = torch.stack([reference, torch.zeros_like(reference) + 9, reference])
    features = block_features(model, DOC, [3, 7], tokens, SETTINGS, disable_adapter=False)
    assert torch.allclose(features[0], features[3], atol=1e-5) and torch.allclose(features[2], features[3], atol=1e-5)
    assert not torch.allclose(features[1], features[3], atol=1e-3)


def test_flex_attention_features_equal_the_dense_mask_features(tiny_llama_dir: Path) -> None:
    tokens = torch.randint(5, 60, (3, 3, 3), generator=torch.Generator().manual_seed(2))
    dense = block_features(tiny(tiny_llama_dir), DOC, [3, 7, 11], tokens, SETTINGS, disable_adapter=False)
    flex = block_features(tiny(tiny_llama_dir, "flex_attention"), DOC, [3, 7, 11], tokens, SETTINGS,
                          disable_adapter=False)
    assert torch.allclose(flex, dense, atol=1e-4)


def test_lora_feature_network_is_the_base_model(tiny_llama_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = tiny(tiny_llama_dir)
    tokens = torch.randint(5, 60, (3, 2, 3), generator=torch.Generator().manual_seed(3))
    expected = block_features(base, DOC, [3, 7], tokens, SETTINGS, disable_adapter=False)
    policy = get_peft_model(tiny(tiny_llama_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.5)  # an adapter that changes the outputs
    assert torch.allclose(block_features(policy, DOC, [3, 7], tokens, SETTINGS, disable_adapter=True), expected,
                          atol=1e-5)
    assert not torch.allclose(block_features(policy, DOC, [3, 7], tokens, SETTINGS, disable_adapter=False),
                              expected, atol=1e-3)


def test_sampling_temperature_zero_is_greedy_and_top_p_keeps_the_smallest_likely_set() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert sample_tokens(logits, 0.0, 1.0).tolist() == [0]
    generator = torch.Generator().manual_seed(0)
    draws = sample_tokens(logits.expand(2000, -1), 1.0, 0.7, generator)
    # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: tokens 0 and 1 only, renormalised to 5/8 and 3/8
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).float().mean().item() - 5 / 8) < 0.04


def test_chunked_logprobs_equal_the_plain_log_softmax_with_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ebft_strided, "LOGIT_CHUNK", 3)
    head = torch.nn.Linear(4, 6, bias=False)
    hidden = torch.randn(7, 4, requires_grad=True)
    targets = torch.tensor([0, 5, 2, 2, 1, 3, 4])
    got = chunked_logprobs(head, hidden, targets, temperature=0.5)
    (grad_got,) = torch.autograd.grad(got.sum(), hidden)
    expected = torch.log_softmax(head(hidden) / 0.5, dim=-1).gather(1, targets[:, None])[:, 0]
    (grad_expected,) = torch.autograd.grad(expected.sum(), hidden)
    assert torch.allclose(got, expected, atol=1e-6) and torch.allclose(grad_got, grad_expected, atol=1e-6)


def test_loss_terms_of_a_document(tiny_llama_dir: Path) -> None:
    """One sample: REINFORCE (advantage = reward) and no diversity; the RL sum is -sum(reward x log p)
    over the block's tokens; the CE term covers every supervised next token."""
    model = tiny(tiny_llama_dir)
    labels = DOC.clone()
    labels[:10] = -100  # a 10-token prompt: anchors from 10 on, CE on tokens 10..23
    one = settings(samples=1, ce_coef=0.5)
    torch.manual_seed(0)
    outcome = strided_document(model, model, False, DOC, labels, 10, one)
    assert place_anchors(24, 10, 4, 3, 3, 0) == [10, 14, 18]  # the last block must end by token 23
    assert outcome.breakdown is not None and outcome.breakdown.rewards.shape == (3, 1)
    assert torch.equal(outcome.breakdown.diversity, torch.zeros(3, 1))
    assert outcome.rl_tokens == 9 and outcome.ce_tokens == 14
    torch.manual_seed(0)
    tokens = rollout(model, DOC, [10, 14, 18], one)
    logps = torch.log_softmax(full_row_logits_for(model, tokens, [10, 14, 18]), dim=-1).gather(-1, tokens[..., None])[..., 0]
    expected = -(outcome.breakdown.rewards.T[:, :, None] * logps).sum()
    assert math.isclose(outcome.rl_sum.item(), expected.item(), rel_tol=1e-4)
    body, head = decoder_and_head(model)
    plain = torch.log_softmax(head(body(input_ids=DOC[None]).last_hidden_state[0]), dim=-1)
    ce = -plain[9:23].gather(1, DOC[10:, None]).sum()
    assert outcome.ce_sum is not None and math.isclose(outcome.ce_sum.item(), ce.item(), rel_tol=1e-4)


def full_row_logits_for(model: Any, tokens: torch.Tensor, anchors: list[int]) -> torch.Tensor:
    layout = StridedLayout.build(len(DOC), anchors, tokens.shape[-1], 3, tokens.shape[0])
    body, head = decoder_and_head(model)
    hidden = body(input_ids=torch.cat([DOC, tokens.reshape(-1)])[None], position_ids=layout.position_ids[None],
                  attention_mask=layout.dense_mask(torch.float32)).last_hidden_state[0]
    predicting = torch.stack([layout.predicting_positions(s) for s in range(tokens.shape[0])])
    return head(hidden[predicting])


def test_document_collator_pads_and_marks_real_tokens() -> None:
    from axolotl.training.ebft_strided_trainer import DocumentCollator

    batch = DocumentCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "prompt_length": 1},
        {"input_ids": [8], "labels": [8], "prompt_length": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["prompt_length"].tolist() == [1, 0]
