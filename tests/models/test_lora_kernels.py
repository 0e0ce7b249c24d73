"""`lora_mlp_kernel` / `lora_qkv_kernel` / `lora_o_kernel` on real PEFT models: the fused model
computes what PEFT computes (fp32: logits, loss and every LoRA gradient within relative 1e-5),
falls back to PEFT where the adapter is disabled or merged, and refuses what it cannot compute."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import yaml
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from axolotl.models.adapters import apply_adapter
from axolotl.models.lora_kernels import LoraKernelError, apply_lora_kernels
from axolotl.testing.configs import config_error, load

INPUT_IDS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29, 33, 37], [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]])
ALL = {"lora_mlp_kernel": True, "lora_qkv_kernel": True, "lora_o_kernel": True}
SHAPE = dict(vocab_size=64, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)


def _cfg(**keys: Any) -> Any:
    text = yaml.safe_dump({"base_model": "tiny", "learning_rate": 1e-4, "micro_batch_size": 1,
                           "datasets": [{"path": "data.jsonl", "type": "alpaca"}], "adapter": "lora", "lora_r": 4,
                           "lora_alpha": 8, "lora_target_linear": True, "peft_init_lora_weights": False, **keys})
    return load(text).cfg


def _tiny(kind: str, **overrides: Any) -> PreTrainedModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **{**SHAPE, **overrides}))


def _pair(kind: str, **keys: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same LoRA model (random, non-zero B) without and with the kernels."""
    plain = apply_adapter(_cfg(), _tiny(kind))
    fused = apply_adapter(_cfg(**keys), _tiny(kind))
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def _forward_backward(model: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(input_ids=INPUT_IDS, labels=INPUT_IDS)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def _fused_modules(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if "forward" in vars(module)}


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "qwen3"])
def test_fused_model_matches_peft(kind: str) -> None:
    plain, fused = _pair(kind, **ALL)
    assert _fused_modules(fused) == {"mlp", "q_proj", "k_proj", "v_proj", "o_proj"}
    want_logits, want_grads = _forward_backward(plain)
    got_logits, got_grads = _forward_backward(fused)
    assert _rel(got_logits, want_logits) <= 1e-5
    assert set(got_grads) == set(want_grads) and len(want_grads) == 2 * 2 * 7  # A and B of 7 projections x 2 layers
    for name, grad in want_grads.items():
        assert grad.norm() > 0, name
        assert _rel(got_grads[name], grad) <= 1e-5, name


@pytest.mark.parametrize(("keys", "fused_names"), [
    ({"lora_mlp_kernel": True}, {"mlp"}),
    ({"lora_qkv_kernel": True}, {"q_proj", "k_proj", "v_proj"}),
    ({"lora_o_kernel": True}, {"o_proj"}),
])
def test_each_key_fuses_only_its_modules(keys: dict[str, bool], fused_names: set[str]) -> None:
    plain, fused = _pair("llama", **keys)
    assert _fused_modules(fused) == fused_names
    assert _rel(_forward_backward(fused)[0], _forward_backward(plain)[0]) <= 1e-5


def test_partially_adapted_mlp_and_attention() -> None:
    """Only q_proj and up_proj adapted: the other projections run as plain frozen weights."""
    plain = apply_adapter(_cfg(lora_target_linear=None, lora_target_modules=["q_proj", "up_proj"]), _tiny("llama"))
    fused = apply_adapter(_cfg(lora_target_linear=None, lora_target_modules=["q_proj", "up_proj"], **ALL),
                          _tiny("llama"))
    fused.load_state_dict(plain.state_dict())
    assert _fused_modules(fused) == {"mlp", "q_proj"}
    want_logits, want_grads = _forward_backward(plain)
    got_logits, got_grads = _forward_backward(fused)
    assert _rel(got_logits, want_logits) <= 1e-5
    for name, grad in want_grads.items():
        assert _rel(got_grads[name], grad) <= 1e-5, name


def test_disabled_and_merged_adapters_fall_back_to_peft() -> None:
    base = _tiny("llama")
    with torch.no_grad():
        base_logits = base(input_ids=INPUT_IDS).logits
    plain, fused = _pair("llama", **ALL)
    with torch.no_grad():
        adapted = plain(input_ids=INPUT_IDS).logits
        with fused.disable_adapter():
            torch.testing.assert_close(fused(input_ids=INPUT_IDS).logits, base_logits)
        fused.merge_adapter()
        torch.testing.assert_close(fused(input_ids=INPUT_IDS).logits, adapted, rtol=1e-5, atol=1e-5)
        fused.unmerge_adapter()
        torch.testing.assert_close(fused(input_ids=INPUT_IDS).logits, adapted, rtol=1e-5, atol=1e-5)
    assert (adapted - base_logits).abs().max() > 1e-3  # the adapter does change the output


def test_a_deep_copy_computes_with_its_own_weights() -> None:
    """The replaced forwards are bound methods, so a copy does not call the original's modules."""
    _, fused = _pair("llama", **ALL)
    clone = copy.deepcopy(fused)
    with torch.no_grad():
        before = fused(input_ids=INPUT_IDS).logits
        for name, param in clone.named_parameters():
            if "lora_B" in name:
                param.zero_()
        with fused.disable_adapter():
            base = fused(input_ids=INPUT_IDS).logits
        torch.testing.assert_close(clone(input_ids=INPUT_IDS).logits, base)
        torch.testing.assert_close(fused(input_ids=INPUT_IDS).logits, before)


def test_unsupported_architecture_is_refused() -> None:
    model = apply_adapter(_cfg(), _tiny("gemma", head_dim=8))
    with pytest.raises(LoraKernelError, match="support the architectures llama, mistral, qwen2, qwen3, not `gemma`"):
        apply_lora_kernels(_cfg(lora_qkv_kernel=True), model)


def test_non_silu_mlp_is_refused() -> None:
    model = apply_adapter(_cfg(), _tiny("llama", hidden_act="gelu"))
    with pytest.raises(LoraKernelError, match="lora_mlp_kernel.*hidden_act is 'gelu'"):
        apply_lora_kernels(_cfg(lora_mlp_kernel=True), model)
    assert apply_lora_kernels(_cfg(lora_qkv_kernel=True), model) == 2 * 3  # attention is unaffected


@pytest.mark.parametrize(("lora_kwargs", "match"), [
    ({"lora_dropout": 0.1}, "uses dropout"),
    ({"use_dora": True}, "DoRA"),
    ({"lora_bias": True}, "has a bias"),
])
def test_adapters_the_kernels_cannot_compute_are_refused(lora_kwargs: dict[str, Any], match: str) -> None:
    """E.g. an adapter loaded from `lora_model_dir` that was trained with dropout."""
    model = get_peft_model(_tiny("llama"), LoraConfig(r=4, target_modules=["q_proj", "gate_proj"], **lora_kwargs))
    with pytest.raises(LoraKernelError, match=match):
        apply_lora_kernels(_cfg(**ALL), model)


@pytest.mark.parametrize(("keys", "related"), [
    ({"lora_dropout": 0.05}, "lora_dropout"),
    ({"peft_use_dora": True}, "peft_use_dora"),
    ({"adapter": "qlora", "load_in_4bit": True}, "load_in_4bit"),
    ({"lora_fan_in_fan_out": True}, "lora_fan_in_fan_out"),
    ({"qat": {"weight_dtype": "int8"}}, "qat"),
])
def test_config_rules_refuse_what_the_kernels_cannot_compute(keys: dict[str, Any], related: str) -> None:
    text = yaml.safe_dump({"base_model": "tiny", "learning_rate": 1e-4, "adapter": "lora", "lora_target_linear": True,
                           "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "lora_mlp_kernel": True, **keys})
    error = config_error(text)
    assert any(i.path == ("lora_mlp_kernel",) and f"`{related}`" in i.message for i in error.issues), error


def test_config_rule_needs_an_adapter() -> None:
    error = config_error("base_model: tiny\nlearning_rate: 1.0e-4\ndatasets: [{path: d.jsonl, type: alpaca}]\n"
                         "lora_o_kernel: true\n")
    assert "fuse LoRA adapters, but no adapter is configured" in str(error)
