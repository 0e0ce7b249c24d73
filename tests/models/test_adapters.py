"""LoRA / QLoRA wrapping: config mapping, what is trained, and continuing from a saved adapter.

Models are the session's tiny random checkpoints (2 layers, hidden 64), so every test runs on
CPU in well under a second.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from axolotl.models.adapters import apply_adapter, linear_module_names, lora_config
from axolotl.testing.configs import load

PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
INPUT_IDS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 6, 8, 10, 12, 14, 16]])


def _cfg(**keys: Any) -> Any:
    """A valid config: the fixed keys every run needs plus the adapter keys under test."""
    text = yaml.safe_dump({
        "base_model": "tiny", "learning_rate": 1e-4, "micro_batch_size": 1,
        "datasets": [{"path": "data.jsonl", "type": "alpaca"}], **keys,
    })
    return load(text).cfg


def _lora(**keys: Any) -> Any:
    return _cfg(adapter="lora", lora_r=4, lora_alpha=8, **keys)


def _model(directory: Path, **kwargs: Any) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(directory, **kwargs)


def _adapted_modules(model: PeftModel) -> set[str]:
    """Full names of modules that carry a LoRA A matrix."""
    return {name for name, module in model.named_modules() if hasattr(module, "lora_A") and len(module.lora_A)}


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits


# config mapping


def test_no_adapter_returns_the_model_itself(tiny_llama_dir: Path) -> None:
    model = _model(tiny_llama_dir)
    assert apply_adapter(_cfg(), model) is model
    assert all(p.requires_grad for p in model.parameters())


def test_every_key_reaches_the_lora_config(tiny_llama_dir: Path) -> None:
    cfg = _lora(
        lora_dropout=0.05, lora_target_modules=["q_proj", "v_proj"], lora_target_parameters="mlp.up_proj.weight",
        lora_modules_to_save=["embed_tokens"], lora_fan_in_fan_out=True, peft_use_dora=True,
        peft_use_rslora=True, peft_layers_to_transform=[1], peft_layers_pattern=["layers"],
        peft_init_lora_weights="gaussian", lora_rank_pattern={"q_proj": 2}, lora_alpha_pattern={"v_proj": 3},
        peft_trainable_token_indices=[0, 3], peft_layer_replication=[[0, 2], [1, 2]],
        peft_ensure_weight_tying=True,
    )
    config = lora_config(cfg, _model(tiny_llama_dir))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.05)
    assert config.target_modules == {"q_proj", "v_proj"}
    assert config.target_parameters == ["mlp.up_proj.weight"]  # a bare string becomes a list
    assert config.modules_to_save == ["embed_tokens"]
    assert config.fan_in_fan_out is True and config.use_dora is True and config.use_rslora is True
    assert config.layers_to_transform == [1] and config.layers_pattern == ["layers"]
    assert config.init_lora_weights == "gaussian"
    assert config.rank_pattern == {"q_proj": 2} and config.alpha_pattern == {"v_proj": 3}
    assert config.trainable_token_indices == [0, 3]
    assert config.layer_replication == [(0, 2), (1, 2)]
    assert config.ensure_weight_tying is True
    assert config.task_type == "CAUSAL_LM"


def test_defaults_are_plain_lora(tiny_llama_dir: Path) -> None:
    config = lora_config(_lora(lora_target_modules=["q_proj"]), _model(tiny_llama_dir))
    assert config.init_lora_weights is True
    assert not (config.use_dora or config.use_rslora or config.fan_in_fan_out)
    assert config.modules_to_save is None and config.layer_replication is None
    assert config.ensure_weight_tying is False


LOFTQ_DEPS = all(importlib.util.find_spec(name) for name in ("scipy", "bitsandbytes"))


@pytest.mark.skipif(not LOFTQ_DEPS, reason="PEFT refuses a LoftQ config without scipy and bitsandbytes")
def test_loftq_block_selects_loftq_init(tiny_llama_dir: Path) -> None:
    config = lora_config(_lora(lora_target_linear=True, peft={"loftq_config": {"loftq_bits": 8}}),
                         _model(tiny_llama_dir))
    assert config.init_lora_weights == "loftq"
    assert config.loftq_config["loftq_bits"] == 8


@pytest.mark.skipif(LOFTQ_DEPS, reason="only checks the message shown when LoftQ's dependencies are absent")
def test_loftq_without_its_dependencies_says_what_to_install(tiny_llama_dir: Path) -> None:
    with pytest.raises(ImportError, match="needs .*scipy"):
        lora_config(_lora(lora_target_linear=True, peft_init_lora_weights="loftq"), _model(tiny_llama_dir))


def test_loftq_refuses_a_conflicting_init(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_linear=True, peft_init_lora_weights="pissa", peft={"loftq_config": {"loftq_bits": 4}})
    with pytest.raises(ValueError, match="peft_init_lora_weights"):
        lora_config(cfg, _model(tiny_llama_dir))


@pytest.mark.parametrize(("keys", "key"), [
    ({"lora_embedding_kernel": True}, "lora_embedding_kernel"),
    ({"lora_on_cpu": True}, "lora_on_cpu"),
    ({"peft_init_lora_weights": "eva"}, "peft_init_lora_weights"),
])
def test_unimplemented_requests_are_refused(tiny_llama_dir: Path, keys: dict[str, Any], key: str) -> None:
    with pytest.raises(NotImplementedError, match=f"`{key}` is not supported yet"):
        apply_adapter(_lora(lora_target_linear=True, **keys), _model(tiny_llama_dir))


# which modules are adapted


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_target_linear_adapts_every_projection_but_not_the_head(arch: str, request: pytest.FixtureRequest) -> None:
    model = _model(request.getfixturevalue(f"tiny_{arch}_dir"))
    assert set(lora_config(_lora(lora_target_linear=True), model).target_modules) == PROJECTIONS
    peft_model = apply_adapter(_lora(lora_target_linear=True), model)
    adapted = _adapted_modules(peft_model)
    assert len(adapted) == 2 * len(PROJECTIONS)  # 2 layers
    assert {name.rsplit(".", 1)[-1] for name in adapted} == PROJECTIONS
    assert not any("lm_head" in name for name in adapted)


def test_target_linear_excludes_a_tied_head(tiny_llama_dir: Path) -> None:
    config = AutoConfig.from_pretrained(tiny_llama_dir, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert "lm_head" not in linear_module_names(model)
    assert set(lora_config(_lora(lora_target_linear=True), model).target_modules) == PROJECTIONS


class _HeadNamedLikeABlock(torch.nn.Module):
    """A model whose output head shares its short name (`proj`) with an inner linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.block = torch.nn.ModuleDict({"proj": torch.nn.Linear(4, 4)})
        self.proj = torch.nn.Linear(4, 8)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.proj


def test_target_linear_uses_full_names_when_a_short_name_would_hit_the_head() -> None:
    config = lora_config(_lora(lora_target_linear=True), _HeadNamedLikeABlock())
    assert config.target_modules == {"block.proj"}


def test_target_linear_and_target_modules_are_a_union(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_linear=True, lora_target_modules=["lm_head"])
    adapted = _adapted_modules(apply_adapter(cfg, _model(tiny_llama_dir)))
    assert any(name.endswith("lm_head") for name in adapted)
    assert len(adapted) == 2 * len(PROJECTIONS) + 1


def test_regex_target_modules_union_with_target_linear(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_linear=True, lora_target_modules=r".*lm_head")
    adapted = _adapted_modules(apply_adapter(cfg, _model(tiny_llama_dir)))
    assert len(adapted) == 2 * len(PROJECTIONS) + 1


def test_regex_target_modules_alone(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_modules=r".*layers\.0\.self_attn\.(q|v)_proj")
    adapted = _adapted_modules(apply_adapter(cfg, _model(tiny_llama_dir)))
    assert {name[name.index("layers."):] for name in adapted} == {"layers.0.self_attn.q_proj",
                                                                 "layers.0.self_attn.v_proj"}


def test_no_targets_is_an_error_listing_the_linear_layers(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="lora_target_linear") as error:
        apply_adapter(_lora(), _model(tiny_llama_dir))
    assert all(name in str(error.value) for name in PROJECTIONS)
    assert "lm_head" not in str(error.value)


def test_layers_to_transform_limits_the_layers(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_modules=["q_proj"], peft_layers_to_transform=[1], peft_layers_pattern=["layers"])
    adapted = _adapted_modules(apply_adapter(cfg, _model(tiny_llama_dir)))
    assert [name[name.index("layers."):] for name in adapted] == ["layers.1.self_attn.q_proj"]


def test_rank_and_alpha_patterns_reach_the_layers(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_modules=["q_proj", "v_proj"], lora_rank_pattern={"q_proj": 2},
                lora_alpha_pattern={"v_proj": 16})
    layers = apply_adapter(cfg, _model(tiny_llama_dir)).base_model.model.model.layers
    assert layers[0].self_attn.q_proj.r["default"] == 2
    assert layers[0].self_attn.v_proj.r["default"] == 4
    assert layers[0].self_attn.v_proj.scaling["default"] == pytest.approx(16 / 4)


def test_layer_replication_grows_the_stack(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_modules=["q_proj"], peft_layer_replication=[[0, 2], [1, 2]])
    peft_model = apply_adapter(cfg, _model(tiny_llama_dir))
    assert len(peft_model.base_model.model.model.layers) == 3
    assert len(_adapted_modules(peft_model)) == 3


def test_dora_and_rslora_reach_peft(tiny_llama_dir: Path) -> None:
    cfg = _lora(lora_target_modules=["q_proj"], peft_use_dora=True, peft_use_rslora=True)
    peft_model = apply_adapter(cfg, _model(tiny_llama_dir))
    assert peft_model.peft_config["default"].use_dora and peft_model.peft_config["default"].use_rslora
    q_proj = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    assert "default" in q_proj.lora_magnitude_vector
    assert q_proj.scaling["default"] == pytest.approx(8 / 4**0.5)  # rsLoRA: alpha / sqrt(r)


def test_autocast_adapter_dtype(tiny_llama_dir: Path) -> None:
    """PEFT upcasts bf16 adapter weights to fp32 by default; the key turns that off."""
    def lora_dtype(**keys: Any) -> torch.dtype:
        peft_model = apply_adapter(_lora(lora_target_modules=["q_proj"], **keys),
                                   _model(tiny_llama_dir, dtype=torch.bfloat16))
        return next(p.dtype for n, p in peft_model.named_parameters() if "lora_A" in n)

    assert lora_dtype() == torch.float32
    assert lora_dtype(peft_autocast_adapter_dtype=False) == torch.bfloat16


# what trains

TRAINING_SETUPS = {
    "lora": {"lora_target_linear": True},
    "dora_rslora": {"lora_target_linear": True, "peft_use_dora": True, "peft_use_rslora": True},
    "modules_to_save": {"lora_target_modules": ["q_proj"], "lora_modules_to_save": ["lm_head"]},
    "trainable_tokens": {"lora_target_modules": ["v_proj"], "peft_trainable_token_indices": [1, 5]},
}


def _is_adapter_param(name: str) -> bool:
    return any(part in name for part in ("lora_", "modules_to_save", "trainable_tokens_delta"))


@pytest.mark.parametrize("setup", TRAINING_SETUPS, ids=list(TRAINING_SETUPS))
def test_only_adapter_parameters_train_and_all_of_them_change(tiny_llama_dir: Path, setup: str) -> None:
    """TRL's invariant: after training, every trainable tensor moved and no frozen one did.
    Two steps, because with B=0 the first step gives A no gradient."""
    peft_model = apply_adapter(_lora(**TRAINING_SETUPS[setup]), _model(tiny_llama_dir))
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all(_is_adapter_param(n) for n in trainable)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    optimizer = torch.optim.SGD(trainable.values(), lr=0.5)
    peft_model.train()
    for _ in range(2):
        optimizer.zero_grad()
        peft_model(input_ids=INPUT_IDS, labels=INPUT_IDS).loss.backward()
        optimizer.step()
    for name, param in peft_model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        assert changed == param.requires_grad, f"{name}: trainable={param.requires_grad}, changed={changed}"


@pytest.mark.parametrize("keys", [{}, {"peft_use_dora": True, "peft_use_rslora": True}], ids=["lora", "dora"])
def test_fresh_adapter_is_a_no_op(tiny_llama_dir: Path, keys: dict[str, Any]) -> None:
    base = _logits(_model(tiny_llama_dir))
    peft_model = apply_adapter(_lora(lora_target_linear=True, **keys), _model(tiny_llama_dir))
    torch.testing.assert_close(_logits(peft_model), base, rtol=0, atol=1e-6)


def test_random_init_is_not_a_no_op(tiny_llama_dir: Path) -> None:
    """Guards the test above: with peft_init_lora_weights false the outputs must move."""
    base = _logits(_model(tiny_llama_dir))
    peft_model = apply_adapter(_lora(lora_target_linear=True, peft_init_lora_weights=False), _model(tiny_llama_dir))
    assert not torch.allclose(_logits(peft_model), base, atol=1e-4)


# lora_model_dir


def _saved_adapter(model: PreTrainedModel, tmp_path: Path) -> tuple[Path, torch.Tensor]:
    """A random (not no-op) adapter saved to disk, and its outputs."""
    peft_model = apply_adapter(_lora(lora_target_linear=True, peft_init_lora_weights=False), model)
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", _logits(peft_model)


def test_lora_model_dir_round_trip_keeps_outputs_and_trains(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory, expected = _saved_adapter(_model(tiny_llama_dir), tmp_path)
    reloaded = apply_adapter(_lora(lora_model_dir=str(directory)), _model(tiny_llama_dir))
    torch.testing.assert_close(_logits(reloaded), expected, rtol=0, atol=1e-6)
    trainable = [n for n, p in reloaded.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * len(PROJECTIONS)  # A and B per projection per layer
    reloaded(input_ids=INPUT_IDS, labels=INPUT_IDS).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in reloaded.parameters() if p.requires_grad)


def test_lora_model_dir_from_another_base_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    other = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama_dir, hidden_size=32,
                                                                        intermediate_size=64))
    directory, _ = _saved_adapter(other, tmp_path)
    with pytest.raises(ValueError, match="not trained on this base model"):
        apply_adapter(_lora(lora_model_dir=str(directory)), _model(tiny_llama_dir))


def test_lora_model_dir_from_a_deeper_model_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """PEFT itself only warns and drops the third layer's tensors."""
    deeper = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama_dir, num_hidden_layers=3))
    directory, _ = _saved_adapter(deeper, tmp_path)
    with pytest.raises(ValueError, match=r"saved tensors have no place in it, e\.g\. .*layers\.2\."):
        apply_adapter(_lora(lora_model_dir=str(directory)), _model(tiny_llama_dir))


@pytest.mark.parametrize("setup", ["dora_rslora", "modules_to_save", "trainable_tokens"])
def test_lora_model_dir_reloads_every_kind_of_adapter_tensor(tiny_llama_dir: Path, tmp_path: Path,
                                                             setup: str) -> None:
    peft_model = apply_adapter(_lora(peft_init_lora_weights=False, **TRAINING_SETUPS[setup]), _model(tiny_llama_dir))
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = apply_adapter(_lora(lora_model_dir=str(tmp_path / "adapter")), _model(tiny_llama_dir))
    torch.testing.assert_close(_logits(reloaded), _logits(peft_model), rtol=0, atol=1e-6)
    assert {n for n, p in reloaded.named_parameters() if p.requires_grad} == {
        n for n, p in peft_model.named_parameters() if p.requires_grad}


def test_lora_model_dir_with_absent_targets_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory, _ = _saved_adapter(_model(tiny_llama_dir), tmp_path)
    config_file = directory / "adapter_config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "target_modules": ["c_attn"]}))
    with pytest.raises(ValueError, match="not trained on this base model"):
        apply_adapter(_lora(lora_model_dir=str(directory)), _model(tiny_llama_dir))


def test_lora_model_dir_rank_conflict_and_missing_dir(tiny_llama_dir: Path, tmp_path: Path) -> None:
    directory, _ = _saved_adapter(_model(tiny_llama_dir), tmp_path)
    cfg = _cfg(adapter="lora", lora_r=16, lora_model_dir=str(directory))
    with pytest.raises(ValueError, match="`lora_r` is 16 but the adapter"):
        apply_adapter(cfg, _model(tiny_llama_dir))
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        apply_adapter(_lora(lora_model_dir=str(tmp_path / "nothing")), _model(tiny_llama_dir))


# QLoRA


def _qlora(**keys: Any) -> Any:
    return _cfg(adapter="qlora", load_in_4bit=True, lora_r=4, lora_alpha=8, lora_target_linear=True, **keys)


def test_qlora_prepares_the_base_and_checkpoints_as_configured(tiny_llama_dir: Path) -> None:
    """Structural: a bf16 base stands in for the 4-bit one (no bitsandbytes kernels on CPU)."""
    peft_model = apply_adapter(_qlora(gradient_checkpointing=True), _model(tiny_llama_dir, dtype=torch.bfloat16))
    base = peft_model.get_base_model()
    assert base.is_activation_checkpointing
    assert all(p.dtype == torch.float32 for p in peft_model.parameters())  # non-quantised tensors upcast
    assert all(_is_adapter_param(n) for n, p in peft_model.named_parameters() if p.requires_grad)
    assert base.get_input_embeddings()(INPUT_IDS).requires_grad  # reentrant checkpointing needs it


def test_qlora_without_checkpointing_leaves_it_off(tiny_llama_dir: Path) -> None:
    peft_model = apply_adapter(_qlora(), _model(tiny_llama_dir, dtype=torch.bfloat16))
    assert not peft_model.get_base_model().is_activation_checkpointing


def test_embeddings_skip_upcast_keeps_embedding_dtypes(tiny_llama_dir: Path) -> None:
    base = apply_adapter(_qlora(embeddings_skip_upcast=True),
                         _model(tiny_llama_dir, dtype=torch.bfloat16)).get_base_model()
    assert base.get_input_embeddings().weight.dtype == torch.bfloat16
    assert base.get_output_embeddings().weight.dtype == torch.bfloat16
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.float32


def test_qlora_with_loftq_is_refused(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="LoftQ"):
        apply_adapter(_qlora(peft={"loftq_config": {"loftq_bits": 4}}), _model(tiny_llama_dir))


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="a real 4-bit base needs bitsandbytes (the `qlora` extra; >= 0.49 runs on CPU)")
def test_qlora_on_a_real_4bit_base(tiny_llama_dir: Path) -> None:
    from transformers import BitsAndBytesConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _model(tiny_llama_dir, quantization_config=BitsAndBytesConfig(load_in_4bit=True), device_map=device)
    peft_model = apply_adapter(_qlora(), model)
    assert len(_adapted_modules(peft_model)) == 2 * len(PROJECTIONS)
    assert all(_is_adapter_param(n) for n, p in peft_model.named_parameters() if p.requires_grad)


class _OldTransformersModel:
    """What transformers < 5.23 models expose: only the gradient_checkpointing_* names."""

    def __init__(self) -> None:
        self.is_gradient_checkpointing = False
        self.calls: list[dict[str, Any]] = []

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any]) -> None:
        self.calls.append(gradient_checkpointing_kwargs)
        self.is_gradient_checkpointing = True


def test_checkpointing_is_enabled_through_the_old_names_too() -> None:
    """transformers 5.17 (the GPU machine's) has no is_activation_checkpointing; this once crashed there."""
    from axolotl.models.adapters import _respect_gradient_checkpointing

    model = _OldTransformersModel()
    cfg = _qlora(gradient_checkpointing=True)
    _respect_gradient_checkpointing(cfg, model)  # type: ignore[arg-type]
    _respect_gradient_checkpointing(cfg, model)  # type: ignore[arg-type]  (idempotent)
    assert model.calls == [{"use_reentrant": False}]
