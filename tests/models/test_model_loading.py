"""`load_model`: dtype rules, config/kwargs overrides, attention backend, quantisation and
flash-attn errors, embedding resizing, freezing, re-initialisation, gradient checkpointing, and
the packing invariant (a packed batch scores exactly what its documents score alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from axolotl.data.collate import PackedCollator
from axolotl.models.model import _from_pretrained_kwargs, fit_embeddings, load_model, memory_placement
from axolotl.models.precision import package_available, resolve_precision
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing.configs import load

BASE = "learning_rate: 1e-4\n"


def cfg_for(model_dir: Path, extra: str = "") -> Any:
    return load(f"base_model: {model_dir}\n{BASE}{extra}").cfg


def load_for(model_dir: Path, extra: str = "") -> Any:
    cfg = cfg_for(model_dir, extra)
    return load_model(cfg, load_tokenizer(cfg))


# ------------------------------------------------------------------------------------------
# dtypes
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "weights", "compute", "autocast"), [
    ("", torch.float32, torch.float32, False),
    ("bf16: true\n", torch.bfloat16, torch.bfloat16, True),  # bf16 weights, as the reference loads them
    ("bf16: full\n", torch.bfloat16, torch.bfloat16, True),
    ("fp16: true\nbf16: false\n", torch.float32, torch.float16, True),  # fp16 keeps fp32 master weights
    ("bfloat16: true\n", torch.bfloat16, torch.bfloat16, False),
    ("bf16: true\nbfloat16: true\n", torch.bfloat16, torch.bfloat16, False),
    ("float16: true\nbf16: false\n", torch.float16, torch.float16, False),
    ("bf16: true\nbfloat16: true\nfloat32: true\n", torch.float32, torch.float32, False),
])
def test_precision_rule(tiny_llama_dir: Path, extra: str, weights: torch.dtype, compute: torch.dtype,
                        autocast: bool) -> None:
    precision = resolve_precision(cfg_for(tiny_llama_dir, extra))
    assert (precision.weights, precision.compute, precision.autocast) == (weights, compute, autocast)


def test_ambiguous_precision_is_refused(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="bfloat16.*float16"):
        resolve_precision(cfg_for(tiny_llama_dir, "bfloat16: true\nfloat16: true\n"))


@pytest.mark.parametrize(("extra", "dtype"), [
    ("bf16: true\n", torch.bfloat16), ("fp16: true\nbf16: false\n", torch.float32),
    ("bfloat16: true\n", torch.bfloat16), ("float16: true\n", torch.float16),
])
def test_loaded_weights_dtype(tiny_llama_dir: Path, extra: str, dtype: torch.dtype) -> None:
    model = load_for(tiny_llama_dir, extra)
    assert {p.dtype for p in model.parameters()} == {dtype}


# ------------------------------------------------------------------------------------------
# config, kwargs, attention
# ------------------------------------------------------------------------------------------

def test_overrides_reach_config_and_from_pretrained(tiny_llama_dir: Path) -> None:
    model = load_for(tiny_llama_dir, "model_config: {rms_norm_eps: 0.001}\nmodel_kwargs: {dtype: bfloat16}\n"
                                     "rope_scaling: {type: linear, factor: 2.0}\n")
    assert model.config.rms_norm_eps == 0.001
    assert model.model.norm.variance_epsilon == 0.001  # applied before the modules were built
    assert model.dtype == torch.bfloat16  # model_kwargs win over the derived dtype
    # rope_scaling is merged: the checkpoint's rope_theta survives.
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "linear", "factor": 2.0}


def test_model_type_selects_the_auto_class(tiny_llama_dir: Path) -> None:
    model = load_for(tiny_llama_dir, "model_type: AutoModelForSequenceClassification\nnum_labels: 3\n")
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.score.out_features == 3
    with pytest.raises(ValueError, match="not a transformers model class"):
        load_for(tiny_llama_dir, "model_type: AutoModelForMagic\n")


@pytest.mark.parametrize(("extra", "implementation"), [
    ("", "sdpa"), ("eager_attention: true\n", "eager"), ("attn_implementation: eager\n", "eager"),
    ("flex_attention: true\n", "flex_attention"),
])
def test_attention_reaches_model_config(tiny_qwen2_dir: Path, extra: str, implementation: str) -> None:
    model = load_for(tiny_qwen2_dir, extra)
    assert model.config._attn_implementation == implementation
    assert model.model.layers[0].self_attn.config._attn_implementation == implementation


@pytest.mark.skipif(package_available("flash_attn"), reason="flash_attn is installed here")
def test_missing_flash_attn_is_a_clear_error(tiny_llama_dir: Path) -> None:
    with pytest.raises(ImportError, match=r"flash_attention.*sdp_attention.*flex_attention"):
        load_for(tiny_llama_dir, "flash_attention: true\n")


@pytest.mark.parametrize("extra", ["adapter: qlora\nload_in_4bit: true\n", "adapter: lora\nload_in_8bit: true\n"])
def test_missing_bitsandbytes_is_a_clear_error(tiny_llama_dir: Path, extra: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import axolotl.models.precision as precision

    monkeypatch.setattr(precision, "package_available", lambda name: name != "bitsandbytes")
    with pytest.raises(ImportError, match=r"bitsandbytes.*`qlora` extra"):
        load_for(tiny_llama_dir, extra + "lora_r: 8\nlora_alpha: 16\n")


@pytest.mark.parametrize(("extra", "key", "hint"), [
    ("gradient_checkpointing: offload_disk\n", "gradient_checkpointing", "`gradient_checkpointing: offload`"),
    ("gradient_checkpointing: true\nactivation_offloading: disk\n", "activation_offloading",
     "`activation_offloading: true`"),
    ("gradient_checkpointing: true\nactivation_offloading: hidden_states\n", "activation_offloading",
     "`activation_offloading: true`"),
    ("device: cuda:0\n", "device", "`device_map`"),
])
def test_unimplemented_keys_are_refused(tiny_llama_dir: Path, extra: str, key: str, hint: str) -> None:
    with pytest.raises(NotImplementedError, match=f"`{key}` is not supported yet") as error:
        load_for(tiny_llama_dir, extra)
    assert hint in str(error.value)


# ------------------------------------------------------------------------------------------
# placement: gpu_memory_limit, max_memory
# ------------------------------------------------------------------------------------------

def _two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import accelerate.utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(accelerate.utils, "get_max_memory", lambda: {0: 80 * 2**30, 1: 80 * 2**30, "cpu": 2**40})


@pytest.mark.parametrize(("extra", "expected"), [
    ("gpu_memory_limit: 20\n", ("auto", {0: "20GiB", 1: "20GiB", "cpu": 2**40})),
    ("gpu_memory_limit: 12000MiB\nmax_memory: {cpu: 64GiB}\ndevice_map: sequential\n",
     ("sequential", {0: "12000MiB", 1: "12000MiB", "cpu": "64GiB"})),
    ("max_memory: {0: 10GiB, cpu: 64GiB}\ndevice_map: auto\n", ("auto", {0: "10GiB", "cpu": "64GiB"})),
    ("", (None, None)),
])
def test_gpu_memory_limit_caps_every_gpu(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, extra: str,
                                         expected: tuple[Any, Any]) -> None:
    _two_gpus(monkeypatch)
    cfg = cfg_for(tiny_llama_dir, extra)
    assert memory_placement(cfg) == expected
    kwargs = _from_pretrained_kwargs(cfg, resolve_precision(cfg), {})
    assert (kwargs.get("device_map"), kwargs.get("max_memory")) == expected


def test_gpu_memory_limit_without_a_gpu_changes_nothing(tiny_llama_dir: Path, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert memory_placement(cfg_for(tiny_llama_dir, "gpu_memory_limit: 20GiB\n")) == (None, None)
    assert "no GPU is visible" in caplog.text
    assert load_for(tiny_llama_dir, "gpu_memory_limit: 20\n").device.type == "cpu"


# ------------------------------------------------------------------------------------------
# embeddings, freezing, re-initialisation, checkpointing
# ------------------------------------------------------------------------------------------

def test_embeddings_grow_with_added_tokens(tiny_llama_dir: Path) -> None:
    cfg = cfg_for(tiny_llama_dir, "tokens: ['<a>', '<b>', '<c>']\n")
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.get_output_embeddings().out_features == len(tokenizer)

    cfg = cfg_for(tiny_llama_dir, "tokens: ['<a>', '<b>', '<c>']\nresize_token_embeddings_to_32x: true\n")
    model = load_model(cfg, tokenizer)
    size = model.get_input_embeddings().num_embeddings
    assert size % 32 == 0 and len(tokenizer) <= size < len(tokenizer) + 32


class _Vocab:
    """Stands in for a tokenizer in `fit_embeddings`, which only needs its length."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def test_embeddings_shrink_only_when_asked(tiny_llama_dir: Path) -> None:
    model = load_for(tiny_llama_dir)
    size = model.get_input_embeddings().num_embeddings
    fit_embeddings(model, _Vocab(size - 5), cfg_for(tiny_llama_dir))
    assert model.get_input_embeddings().num_embeddings == size
    fit_embeddings(model, _Vocab(size - 5), cfg_for(tiny_llama_dir, "shrink_embeddings: true\n"))
    assert model.get_input_embeddings().num_embeddings == size - 5


def test_mean_resizing_initialises_new_rows_at_the_mean(tiny_llama_dir: Path) -> None:
    model = load_for(tiny_llama_dir)
    weight = model.get_input_embeddings().weight.detach().clone()
    fit_embeddings(model, _Vocab(len(weight) + 4), cfg_for(tiny_llama_dir, "mean_resizing_embeddings: true\n"))
    new_rows = model.get_input_embeddings().weight[len(weight):].detach()
    # sampled around the mean with the old covariance (scaled down): far closer than any old row
    assert (new_rows - weight.mean(0)).norm(dim=-1).max() < (weight - weight.mean(0)).norm(dim=-1).min()


def test_unfrozen_parameters(tiny_llama_dir: Path) -> None:
    model = load_for(tiny_llama_dir, "unfrozen_parameters: ['model\\.layers\\.1\\.', 'lm_head']\n")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "lm_head")) for n in trainable)
    assert "lm_head.weight" in trainable and "model.layers.0.self_attn.q_proj.weight" not in trainable
    with pytest.raises(ValueError, match="match no parameter"):
        load_for(tiny_llama_dir, "unfrozen_parameters: ['model\\.layers\\.9\\.']\n")


def test_reinit_weights_is_random_and_deterministic(tiny_llama_dir: Path) -> None:
    loaded = load_for(tiny_llama_dir).state_dict()
    first = load_for(tiny_llama_dir, "reinit_weights: true\nseed: 7\n").state_dict()
    again = load_for(tiny_llama_dir, "reinit_weights: true\nseed: 7\n").state_dict()
    other = load_for(tiny_llama_dir, "reinit_weights: true\nseed: 8\n").state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first[name], loaded[name]) and not torch.equal(first[name], other[name])


@pytest.mark.parametrize(("extra", "reentrant"), [
    ("", False), ("gradient_checkpointing_kwargs: {use_reentrant: true}\n", True),
])
def test_gradient_checkpointing(tiny_llama_dir: Path, extra: str, reentrant: bool) -> None:
    model = load_for(tiny_llama_dir, "gradient_checkpointing: true\n" + extra)
    assert model.is_activation_checkpointing and model.config.use_cache is False
    assert model.model.layers[0]._gradient_checkpointing_func.keywords["use_reentrant"] is reentrant
    plain = load_for(tiny_llama_dir)
    assert not plain.is_activation_checkpointing and plain.config.use_cache is not False
    # `offload` checkpoints the same way; the trainer offloads what the checkpoints save (models/offload.py).
    offload = load_for(tiny_llama_dir, "gradient_checkpointing: offload\n")
    assert offload.is_activation_checkpointing and offload.config.use_cache is False
    assert offload.model.layers[0]._gradient_checkpointing_func.keywords["use_reentrant"] is False
    assert load_for(tiny_llama_dir, "sample_packing: true\n").config.use_cache is False


# ------------------------------------------------------------------------------------------
# packing invariant
# ------------------------------------------------------------------------------------------

LOGITS_ATOL = 1e-5
"""fp32 on CPU: packed and alone differ only in reduction order (measured ~2e-7)."""
LOSS_RTOL = 1e-5

DOC_LENGTHS = ((7, 12, 5), (9, 4))
"""Two bins, the first with three documents and the second with two plus a padding segment."""


def _documents(vocab: int) -> list[list[dict[str, list[int]]]]:
    generator = torch.Generator().manual_seed(0)
    bins = []
    for lengths in DOC_LENGTHS:
        rows = []
        for n in lengths:
            ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
            labels = [-100 if i < 2 else t for i, t in enumerate(ids)]  # a masked "prompt"
            rows.append({"input_ids": ids, "labels": labels})
        bins.append(rows)
    return bins


FLEX = pytest.param("flex_attention", marks=pytest.mark.slow)
"""flex runs on CPU in torch 2.13, but transformers always torch.compiles it: ~45 s on 2 cores
with a cold inductor cache, ~10 s warm, once per process."""


@pytest.mark.parametrize("attention", ["sdpa", "eager", FLEX])
@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_packed_batch_equals_documents_alone(request: pytest.FixtureRequest, fixture: str, attention: str) -> None:
    model = load_for(request.getfixturevalue(fixture), f"attn_implementation: {attention}\nsample_packing: true\n")
    model.eval()
    bins = _documents(model.config.vocab_size)
    batch = PackedCollator(pad_token_id=0, sequence_len=32, mask_document_starts=True)(bins)
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed = model(**batch, num_items_in_batch=1)  # a sum, not a mean
        alone_loss = torch.zeros(())
        for b, rows in enumerate(bins):
            offset = 0
            for row in rows:
                n = len(row["input_ids"])
                alone = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]),
                              num_items_in_batch=1)
                torch.testing.assert_close(packed.logits[b, offset:offset + n], alone.logits[0],
                                           atol=LOGITS_ATOL, rtol=0)
                alone_loss += alone.loss
                offset += n
    torch.testing.assert_close(packed.loss, alone_loss, rtol=LOSS_RTOL, atol=0)
    # the invariant is not vacuous: with one causal mask over the row, documents would mix
    with torch.no_grad():
        mixed = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"]))
    assert (mixed.logits[0, 7:19] - packed.logits[0, 7:19]).abs().max() > 1e-3
