"""Quantisation-aware training: prepare swaps in fake quantisation with the numerics of the PTQ
scheme, `fake_quant_after_n_steps` delays it, convert gives back a plain model, and a QAT run
ends in a checkpoint that `axolotl quantize` turns into the quantised model it trained for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("torchao", reason="the `torchao` extra is not installed")

from transformers import AutoModelForCausalLM  # noqa: E402

from axolotl.models.qat import FakeQuantStart, apply_qat, convert_qat, fake_quantizers, qat_plan  # noqa: E402
from axolotl.models.quantize import QuantizationError, import_torchao, plan_for, quantize, quantize_model  # noqa: E402
from axolotl.testing import write_rows  # noqa: E402
from axolotl.testing.configs import load  # noqa: E402
from axolotl.training.sft import preflight, train  # noqa: E402
from axolotl.training.support import NotSupportedYet  # noqa: E402

INPUT_IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 70, 99]])
SCHEME = {"weight_dtype": "int4", "activation_dtype": "int8", "group_size": 32}


def _cfg(qat: dict[str, Any] | None = None, **keys: Any) -> Any:
    data: dict[str, Any] = {"base_model": "tiny", "learning_rate": 1e-4, **keys}
    if qat is not None:
        data["qat"] = qat
    return load(yaml.safe_dump(data)).cfg


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(INPUT_IDS).logits


@pytest.fixture(scope="module")
def float_model(tiny_llama_dir: Path) -> Any:
    import_torchao()
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


def test_prepare_fakes_the_ptq_numerics_and_convert_restores_plain_layers(float_model: Any) -> None:
    cfg = _cfg(SCHEME)
    model = copy.deepcopy(float_model)
    assert apply_qat(model, qat_plan(cfg)) == []
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "FakeQuantizedLinear"
    assert type(model.lm_head) is torch.nn.Linear  # the head stays full precision, as in PTQ
    assert len(fake_quantizers(model)) == 2 * 14  # activations + weights of 7 projections x 2 layers
    assert set(model.state_dict()) == set(float_model.state_dict())  # checkpoints keep their layout

    # fake quantisation follows the PTQ scheme: forward matches the really quantised model closely
    ptq = copy.deepcopy(float_model)
    quantize_model(ptq, plan_for(cfg.qat, "qat"))
    reference, fake, real = _logits(float_model), _logits(model), _logits(ptq)
    assert float((fake - real).abs().max()) < 0.1 * float((fake - reference).abs().max())

    convert_qat(model)
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert not fake_quantizers(model)
    assert torch.equal(_logits(model), reference)  # same weights, no fake quantisation left


def test_embedding_is_fake_quantised_weight_only(float_model: Any) -> None:
    model = copy.deepcopy(float_model)
    apply_qat(model, qat_plan(_cfg({**SCHEME, "quantize_embedding": True})))
    assert type(model.model.embed_tokens).__name__ == "FakeQuantizedEmbedding"
    assert type(model.lm_head).__name__ == "FakeQuantizedLinear"
    convert_qat(model)
    assert type(model.model.embed_tokens) is torch.nn.Embedding and type(model.lm_head) is torch.nn.Linear


def test_fake_quant_after_n_steps_delays_fake_quantisation(float_model: Any) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = copy.deepcopy(float_model)
    callbacks = apply_qat(model, qat_plan(_cfg({**SCHEME, "fake_quant_after_n_steps": 3})))
    assert len(callbacks) == 1 and isinstance(callbacks[0], FakeQuantStart)
    assert torch.equal(_logits(model), _logits(float_model))  # off until step 3
    state, args = TrainerState(), TrainingArguments(output_dir="unused", report_to="none")
    for step, enabled in ((0, False), (2, False), (3, True), (7, True)):
        state.global_step = step
        callbacks[0].on_step_begin(args, state, TrainerControl(), model=model)
        assert all(q.enabled is enabled for q in fake_quantizers(model)), step


@pytest.mark.parametrize(("qat", "keys", "error", "message"), [
    ({"weight_dtype": "float8"}, {}, QuantizationError, "no quantisation-aware training for float8 weight-only"),
    ({"weight_dtype": "int8", "activation_dtype": "float8"}, {}, QuantizationError, "not a supported combination"),
    (SCHEME, {"adapter": "lora"}, NotImplementedError, "`qat` with `adapter: lora` is not supported yet"),
])
def test_refusals(qat: dict[str, Any], keys: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        qat_plan(_cfg(qat, **keys))


def test_cuda_only_fake_quantisation_is_refused_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(QuantizationError, match="`qat`: NVFP4 .* needs a CUDA GPU"):
        qat_plan(_cfg({"weight_dtype": "nvfp4"}))
    qat_plan(_cfg({"weight_dtype": "int4"}))  # int4 fake quantisation runs anywhere; only its PTQ needs CUDA


def test_train_refuses_before_loading_anything() -> None:
    with pytest.raises(NotSupportedYet, match="`qat` with `adapter: lora`"):
        preflight(_cfg(SCHEME, adapter="lora", lora_r=4, lora_alpha=8,
                       datasets=[{"path": "data.jsonl", "type": "alpaca"}]))


def test_qat_run_saves_a_plain_model_that_quantizes(tiny_llama_dir: Path, tmp_path: Path) -> None:
    rows = [{"instruction": f"Say {i}.", "input": "", "output": ("apple", "river")[i % 2]} for i in range(8)]
    write_rows(rows, tmp_path / "data", "jsonl")
    cfg = _cfg({**SCHEME, "fake_quant_after_n_steps": 2}, base_model=str(tiny_llama_dir),
               datasets=[{"path": str(tmp_path / "data.jsonl"), "type": "alpaca"}],
               dataset_prepared_path=str(tmp_path / "prepared"), output_dir=str(tmp_path / "out"),
               sequence_len=256, micro_batch_size=2, max_steps=4, optimizer="adamw_torch", learning_rate=1e-3,
               save_strategy="no", dataset_num_proc=1)
    result = train(cfg)
    plain = train(cfg.model_copy(update={"qat": None, "output_dir": str(tmp_path / "plain")}))
    # fake quantisation starts at step 2: identical losses before, different ones after
    assert result.losses[:2] == plain.losses[:2]
    assert all(a != b for a, b in zip(result.losses[2:], plain.losses[2:])), (result.losses, plain.losses)

    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as saved:
        assert saved.metadata().get("format") == "pt" and "tensor_names" not in saved.metadata()  # no torchao
        assert saved.get_tensor("model.layers.0.self_attn.q_proj.weight").dtype == torch.float32
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert type(trained.model.layers[0].self_attn.q_proj) is torch.nn.Linear

    quantized = quantize(cfg)  # no `quantization:` block: the `qat:` scheme is reused
    assert quantized.source == str(tmp_path / "out")
    loaded = AutoModelForCausalLM.from_pretrained(quantized.path)
    assert type(loaded.model.layers[0].self_attn.q_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"
    expected = copy.deepcopy(trained)
    quantize_model(expected, plan_for(cfg.qat, "qat"))
    assert torch.equal(_logits(loaded), _logits(expected))
