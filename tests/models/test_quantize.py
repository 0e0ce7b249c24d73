"""Post-training quantisation with torchao: which dtype pairs map to which scheme, the errors for
the rest, and checkpoints that load back and generate exactly like the in-memory quantised model.

Everything runs on CPU with the session's tiny Llama (hidden 64, so groups of 32 fit).
"""

from __future__ import annotations

import copy
import shutil
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("torchao", reason="the `torchao` extra is not installed")

from transformers import AutoModelForCausalLM  # noqa: E402

from axolotl.config.schema.tools import ActivationDType, WeightDType  # noqa: E402
from axolotl.models.inference import GenerationSettings, generate  # noqa: E402
from axolotl.models.quantize import (  # noqa: E402
    QUANTIZED_DIR_NAME,
    SCHEMES,
    QuantizationError,
    import_torchao,
    model_to_quantize,
    plan_for,
    quantize,
    quantize_model,
    save_atomically,
)
from axolotl.testing.configs import load  # noqa: E402

INPUT_IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 70, 99]])


def _cfg(block: dict[str, Any] | None = None, key: str = "quantization", **keys: Any) -> Any:
    data: dict[str, Any] = {"base_model": "tiny", "learning_rate": 1e-4, **keys}
    if block is not None:
        data[key] = block
    return load(yaml.safe_dump(data)).cfg


def _plan(block: dict[str, Any], key: str = "quantization") -> Any:
    cfg = _cfg(block, key)
    return plan_for(getattr(cfg, key), key)


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(INPUT_IDS).logits


def _quantized_type(module: torch.nn.Module) -> str:
    return type(module.weight).__name__


@pytest.fixture(scope="module")
def float_model(tiny_llama_dir: Path) -> Any:
    import_torchao()
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


# --------------------------------------------------------------------------------------------
# the scheme table and its errors
# --------------------------------------------------------------------------------------------

def test_scheme_keys_are_schema_values() -> None:
    weights, activations = set(typing.get_args(WeightDType)), set(typing.get_args(ActivationDType))
    for weight, activation in SCHEMES:
        assert weight in weights and (activation is None or activation in activations)


@pytest.mark.parametrize(("block", "message"), [
    ({"weight_dtype": "int8", "activation_dtype": "float8"},
     "`quantization.weight_dtype: int8` with `quantization.activation_dtype: float8` is not a supported"),
    ({"weight_dtype": "int4", "activation_dtype": "int4"}, "`quantization.activation_dtype: int4`"),
    ({"weight_dtype": "nvfp4", "activation_dtype": "int8"}, "`quantization.weight_dtype: nvfp4` with"),
    ({"weight_dtype": "nvfp4", "group_size": 32}, "`quantization.group_size: 32` does not apply to NVFP4"),
    ({"weight_dtype": "float8", "activation_dtype": "float8", "group_size": 64},
     "`quantization.group_size: 64` does not apply to float8"),
    ({"weight_dtype": "float8", "quantize_embedding": True}, "`quantization.quantize_embedding: true` needs"),
    ({"weight_dtype": "int4", "group_size": None}, "`quantization.group_size: null`: int4 weight-only"),
])
def test_unsupported_blocks_name_key_and_value(block: dict[str, Any], message: str) -> None:
    with pytest.raises(QuantizationError, match="supported|does not apply|needs|per group") as info:
        _plan(block)
    assert message in str(info.value)


def test_block_formats_use_their_own_group_size() -> None:
    assert _plan({"weight_dtype": "nvfp4"}).group_size == 16
    assert _plan({"weight_dtype": "mxfp4"}).group_size == 32
    assert _plan({"weight_dtype": "int4", "activation_dtype": "float8", "group_size": 128}).group_size == 128
    assert _plan({"weight_dtype": "float8"}).group_size is None


def test_fp8_is_float8_and_qat_blocks_use_the_same_table() -> None:
    assert _plan({"weight_dtype": "fp8", "activation_dtype": "fp8"}).scheme is SCHEMES[("float8", "float8")]
    plan = _plan({"weight_dtype": "int4", "activation_dtype": "int8", "group_size": 64}, key="qat")
    assert (plan.key, plan.scheme, plan.group_size) == ("qat", SCHEMES[("int4", "int8")], 64)


@pytest.mark.parametrize("block", [{"weight_dtype": "int4"}, {"weight_dtype": "float8", "activation_dtype": "float8"},
                                   {"weight_dtype": "nvfp4"}, {"weight_dtype": "mxfp4"}])
def test_cuda_only_schemes_are_refused_on_cpu(block: dict[str, Any], float_model: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(QuantizationError, match="needs a CUDA GPU") as info:
        quantize_model(copy.deepcopy(float_model), _plan(block))
    assert str(info.value).startswith("`quantization`: ")


def test_schemes_for_newer_gpus_are_refused_on_older_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.models.quantize import require_cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *args: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "NVIDIA H100")
    with pytest.raises(QuantizationError, match=r"NVFP4 .* needs a GPU of compute capability 10.0 or newer; "
                                                r"NVIDIA H100 is 9.0"):
        require_cuda(_plan({"weight_dtype": "nvfp4"}))
    require_cuda(_plan({"weight_dtype": "float8", "activation_dtype": "float8"}))  # 8.9+: fine on 9.0


def test_missing_torchao_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)
    with pytest.raises(QuantizationError, match=r"needs torchao.*pip install 'axolotl\[torchao\]'"):
        import_torchao()


def test_config_without_a_block_is_an_error() -> None:
    with pytest.raises(QuantizationError, match="no `quantization:` block"):
        quantize(_cfg())


def test_hub_push_is_refused(tmp_path: Path) -> None:
    cfg = _cfg({"weight_dtype": "int8"}, hub_model_id="me/model", output_dir=str(tmp_path))
    with pytest.raises(NotImplementedError, match="`hub_model_id` is not supported yet"):
        quantize(cfg)


# --------------------------------------------------------------------------------------------
# quantising in memory: what is quantised and how close it stays
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("block", "tolerance"), [
    ({"weight_dtype": "int8"}, 0.03),
    ({"weight_dtype": "int8", "activation_dtype": "int8"}, 0.03),
    ({"weight_dtype": "int4", "activation_dtype": "int8"}, 0.4),
    ({"weight_dtype": "float8"}, 0.1),
])
def test_cpu_schemes_quantize_every_linear_but_the_head(block: dict[str, Any], tolerance: float,
                                                         float_model: Any) -> None:
    model = copy.deepcopy(float_model)
    quantize_model(model, _plan(block))
    attention = model.model.layers[0].self_attn
    assert _quantized_type(attention.q_proj) != "Parameter"
    assert _quantized_type(model.model.layers[1].mlp.down_proj) == _quantized_type(attention.q_proj)
    assert _quantized_type(model.lm_head) == "Parameter" and _quantized_type(model.model.embed_tokens) == "Parameter"
    reference, got = _logits(float_model), _logits(model)
    error = float((got - reference).abs().max() / reference.abs().max())
    assert 0 < error < tolerance, error  # changed (really quantised), but still the same model


def test_group_size_reaches_torchao(float_model: Any) -> None:
    coarse, fine = copy.deepcopy(float_model), copy.deepcopy(float_model)
    quantize_model(coarse, _plan({"weight_dtype": "int4", "activation_dtype": "int8", "group_size": 64}))
    quantize_model(fine, _plan({"weight_dtype": "int4", "activation_dtype": "int8", "group_size": 32}))
    proj = "q_proj"
    scales = [getattr(m.model.layers[0].self_attn, proj).weight.scale.numel() for m in (coarse, fine)]
    assert scales == [64, 128]  # 64 rows x (64 / group_size) groups


# --------------------------------------------------------------------------------------------
# saving and loading back
# --------------------------------------------------------------------------------------------

def _write_config(tmp_path: Path, model_dir: Path, block: dict[str, Any], key: str = "quantization") -> Any:
    return _cfg(block, key, base_model=str(model_dir), output_dir=str(tmp_path / "out"))


@pytest.mark.parametrize("block", [{"weight_dtype": "int8"}, {"weight_dtype": "int4", "activation_dtype": "int8"}])
def test_saved_model_loads_back_identical_and_generates(block: dict[str, Any], tiny_llama_dir: Path,
                                                        float_model: Any, tmp_path: Path) -> None:
    result = quantize(_write_config(tmp_path, tiny_llama_dir, block))
    assert result.path == (tmp_path / "out" / QUANTIZED_DIR_NAME).resolve()
    assert result.source == str(tiny_llama_dir)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (result.path / name).is_file(), name
    assert not list(result.path.parent.glob(".quantized.*")), "no staging folder is left behind"

    loaded = AutoModelForCausalLM.from_pretrained(result.path).eval()
    assert loaded.config.quantization_config.quant_method == "torchao"
    expected = copy.deepcopy(float_model)
    quantize_model(expected, _plan(block))
    assert _quantized_type(loaded.model.layers[0].mlp.up_proj) == _quantized_type(expected.model.layers[0].mlp.up_proj)
    assert torch.equal(_logits(loaded), _logits(expected))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(result.path)
    reply = generate(loaded, tokenizer, "Hello", GenerationSettings(max_new_tokens=4), stream=False)
    assert isinstance(reply, str)


def test_tied_embeddings_are_untied_and_both_quantised(tiny_llama_dir: Path, tmp_path: Path) -> None:
    tied_dir = tmp_path / "tied"
    from transformers import AutoConfig

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tiny_llama_dir, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.save_pretrained(tied_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_llama_dir / name).exists():
            shutil.copy(tiny_llama_dir / name, tied_dir / name)

    block = {"weight_dtype": "int8", "quantize_embedding": True}
    expected = copy.deepcopy(model)
    quantize_model(expected, _plan(block))
    assert _quantized_type(expected.model.embed_tokens) == "IntxUnpackedToInt8Tensor"
    assert _quantized_type(expected.lm_head) == "IntxUnpackedToInt8Tensor"

    result = quantize(_write_config(tmp_path, tied_dir, block))
    loaded = AutoModelForCausalLM.from_pretrained(result.path).eval()
    assert loaded.config.tie_word_embeddings is False
    assert _quantized_type(loaded.model.embed_tokens) == "IntxUnpackedToInt8Tensor"
    assert _quantized_type(loaded.lm_head) == "IntxUnpackedToInt8Tensor"
    assert torch.equal(_logits(loaded), _logits(expected))


def test_qat_block_is_used_when_there_is_no_quantization_block(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, tiny_llama_dir, {"weight_dtype": "int4", "activation_dtype": "int8",
                                                    "group_size": 32}, key="qat")
    result = quantize(cfg)
    assert result.plan.key == "qat"
    loaded = AutoModelForCausalLM.from_pretrained(result.path)
    assert _quantized_type(loaded.model.layers[0].self_attn.o_proj) == "IntxUnpackedToInt8Tensor"


def test_save_replaces_atomically_and_keeps_the_old_one_on_failure(float_model: Any, tiny_llama_dir: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    target = tmp_path / "quantized"
    target.mkdir()
    (target / "old.txt").write_text("previous run")
    model = copy.deepcopy(float_model)
    quantize_model(model, _plan({"weight_dtype": "int8"}))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_atomically(model, tokenizer, target)
    assert (target / "old.txt").read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quantized"]

    monkeypatch.undo()
    save_atomically(model, tokenizer, target)
    assert not (target / "old.txt").exists() and (target / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quantized"]


def test_which_model_is_quantised(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg({"weight_dtype": "int8"}, base_model=str(tiny_llama_dir), output_dir=str(tmp_path / "out"))
    assert model_to_quantize(cfg, None) == str(tiny_llama_dir)  # nothing trained yet
    shutil.copytree(tiny_llama_dir, tmp_path / "out")
    assert model_to_quantize(cfg, None) == str(tmp_path / "out")  # the trained model
    assert model_to_quantize(cfg, "elsewhere") == "elsewhere"  # --base-model wins
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "adapter_config.json").write_text("{}")
    with pytest.raises(QuantizationError, match="holds a LoRA adapter.*axolotl merge-lora"):
        model_to_quantize(cfg, None)
