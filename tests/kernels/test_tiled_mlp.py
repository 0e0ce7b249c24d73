"""Tiled MLP (`axolotl.kernels.tiled_mlp`, `axolotl.models.tiled_mlp`) against the untiled MLP:
outputs and the gradients of the input and of every parameter. The MLP acts on each token
independently, so only the order of summation changes: relative error <= 1e-6 in fp32."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

from axolotl.kernels.tiled_mlp import default_num_shards, tiled_forward
from axolotl.models.tiled_mlp import apply_tiled_mlp
from axolotl.testing.configs import config_error, load

SHAPE = dict(vocab_size=64, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)
INPUT_IDS = torch.randint(0, 64, (2, 70), generator=torch.Generator().manual_seed(0))


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def _cfg(**keys: Any) -> Any:
    return load(yaml.safe_dump({"base_model": "tiny", "learning_rate": 1e-4,
                                "datasets": [{"path": "d.jsonl", "type": "alpaca"}], **keys})).cfg


def _model(kind: str = "llama") -> Any:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **SHAPE))


def _grads(model: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    out = model(input_ids=INPUT_IDS, labels=INPUT_IDS)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("num_shards", [1, 3, 7, 1000])
def test_tiled_forward_matches_the_plain_mlp(num_shards: int) -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 40), torch.nn.SiLU(), torch.nn.Linear(40, 16))
    x = torch.randn(2, 23, 16)
    plain_x, tiled_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(2, 23, 16)
    mlp(plain_x).backward(upstream)
    plain = {n: p.grad.clone() for n, p in mlp.named_parameters()}
    mlp.zero_grad()
    out = tiled_forward(mlp, tiled_x, num_shards)
    out.backward(upstream)
    assert _rel(out, mlp(x)) <= 1e-6
    assert _rel(tiled_x.grad, plain_x.grad) <= 1e-6
    for name, grad in plain.items():
        assert _rel(mlp.get_parameter(name).grad, grad) <= 1e-6, name


def test_without_grad_the_shards_are_computed_directly() -> None:
    mlp = torch.nn.Linear(8, 8)
    x = torch.randn(1, 10, 8)
    with torch.no_grad():
        torch.testing.assert_close(tiled_forward(mlp, x, 4), mlp(x))


def test_default_shards_follow_sequence_over_hidden_size() -> None:
    assert default_num_shards(16384, 2048) == 8
    assert default_num_shards(4097, 2048) == 3
    assert default_num_shards(100, 2048) == 1


@pytest.mark.parametrize("shards", [None, 4])
def test_tiled_model_trains_like_the_plain_model(shards: int | None) -> None:
    plain, tiled = _model(), _model()
    assert apply_tiled_mlp(tiled, _cfg(tiled_mlp=True, tiled_mlp_num_shards=shards)) == 2
    assert all("forward" in vars(layer.mlp) for layer in tiled.model.layers)
    want_logits, want_grads = _grads(plain)
    got_logits, got_grads = _grads(tiled)
    assert _rel(got_logits, want_logits) <= 1e-6
    for name, grad in want_grads.items():
        assert _rel(got_grads[name], grad) <= 1e-6, name


def test_tiling_calls_the_mlp_once_per_shard_and_again_in_backward() -> None:
    model = _model()
    apply_tiled_mlp(model, _cfg(tiled_mlp=True, tiled_mlp_num_shards=5))
    calls = []
    model.model.layers[0].mlp.gate_proj.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[-2]))
    model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss.backward()
    assert calls == [14] * 5 * 2  # 70 tokens in 5 slices, forward then the recomputation in backward


def test_unsupported_architecture_is_refused() -> None:
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", n_embd=32, n_layer=1, n_head=2,
                                                                  vocab_size=64))
    with pytest.raises(ValueError, match="`tiled_mlp: true` supports the architectures .* not `gpt2`"):
        apply_tiled_mlp(model, _cfg(tiled_mlp=True))


def test_config_rules() -> None:
    text = "base_model: m\nlearning_rate: 1.0e-4\ndatasets: [{path: d.jsonl, type: alpaca}]\n"
    assert "has no effect without `tiled_mlp: true`" in str(config_error(text + "tiled_mlp_num_shards: 4\n"))
    assert "tiled_mlp_use_original_mlp" in str(config_error(text + "tiled_mlp: true\n"
                                                            "tiled_mlp_use_original_mlp: false\n"))
    assert load(text + "tiled_mlp: true\ntiled_mlp_num_shards: 4\n").cfg.tiled_mlp
