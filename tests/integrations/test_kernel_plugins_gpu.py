"""The Liger and Cut Cross Entropy plugins on a CUDA GPU with their packages installed (skipped
otherwise): the real kernels against the unpatched model / the plain loss.

Bounds: in bf16 the patched model's error against the fp32 unpatched model is at most 2x the
unpatched bf16 model's own error + 5e-3 (relative Frobenius norms of the loss and of every
parameter gradient); in fp32 the patched model matches the unpatched one within relative 1e-3
(loss 1e-4). The registry test needs only liger-kernel (and triton) importable.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from axolotl.integrations.liger import LIGER_ARCHITECTURES, LigerPlugin
from axolotl.testing.configs import load

HAVE_LIGER = importlib.util.find_spec("liger_kernel") is not None and importlib.util.find_spec("triton") is not None
HAVE_CCE = importlib.util.find_spec("cut_cross_entropy") is not None and importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
needs_liger = pytest.mark.skipif(not (HAVE_LIGER and CUDA), reason="needs liger-kernel, triton and a CUDA GPU")
needs_cce = pytest.mark.skipif(not (HAVE_CCE and CUDA), reason="needs cut-cross-entropy, triton and a CUDA GPU")
LIGER = "axolotl.integrations.liger.LigerPlugin"
BLOCK = dict(liger_rope=True, liger_rms_norm=True, liger_glu_activation=True, liger_layer_norm=True,
             liger_fused_linear_cross_entropy=True)
SHAPE = dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False)


@pytest.fixture(autouse=True)
def exact_fp32_matmuls() -> Iterator[None]:
    """fp32 means fp32 here: a training run earlier in the process may have enabled TF32."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def _cfg(**keys: Any) -> Any:
    return load(yaml.safe_dump({"base_model": "m", "learning_rate": 1e-4, "datasets": [{"path": "d.jsonl",
                                "type": "alpaca"}], "plugins": [LIGER], **keys})).cfg


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


@pytest.fixture
def restore_transformers() -> Iterator[None]:
    """Liger replaces module-level functions/classes of transformers (rope, norms, forwards):
    put them back so later tests see the stock library."""
    from transformers.models.llama import modeling_llama

    saved = dict(vars(modeling_llama))
    forward = modeling_llama.LlamaForCausalLM.forward
    yield
    for name, value in saved.items():
        setattr(modeling_llama, name, value)
    modeling_llama.LlamaForCausalLM.forward = forward


@pytest.mark.skipif(not HAVE_LIGER, reason="needs liger-kernel and triton")
def test_the_registry_matches_the_installed_liger() -> None:
    import inspect

    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    installed = {}
    for model_type, apply in MODEL_TYPE_TO_APPLY_LIGER_FN.items():
        parameters = inspect.signature(apply).parameters.values()
        names = {p.name for p in parameters if p.kind is not p.VAR_KEYWORD} - {"model", "relu_squared"}
        installed[model_type] = frozenset("glu" if n in ("swiglu", "geglu") else n for n in names)
    assert installed == dict(LIGER_ARCHITECTURES)


def _llama(dtype: torch.dtype) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.random.fork_rng(devices=[0]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **SHAPE), dtype=torch.float32)
    return model.to("cuda", dtype).train()


def _loss_and_grads(model: Any, ids: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return [loss.detach().float()] + [p.grad.float() for p in model.parameters()]


@needs_liger
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_liger_patched_llama_matches_the_unpatched_model(dtype: torch.dtype, restore_transformers: None) -> None:
    ids = torch.randint(0, SHAPE["vocab_size"], (2, 512), generator=torch.Generator().manual_seed(0)).cuda()
    truth = _loss_and_grads(_llama(torch.float32), ids)
    unpatched = _loss_and_grads(_llama(dtype), ids)  # before patching: liger's rope patch is module-wide
    model = _llama(dtype)
    LigerPlugin().post_model_load(_cfg(**BLOCK), model)
    assert type(model.model.norm).__name__ == "LlamaRMSNorm" and model.model.norm._get_name() == "LigerRMSNorm"
    patched = _loss_and_grads(model, ids)
    for index, (got, ref, exact) in enumerate(zip(patched, unpatched, truth)):
        if dtype == torch.float32:
            assert _rel(got, ref) <= (1e-4 if index == 0 else 1e-3), f"tensor {index} (0 = loss)"
        else:
            assert _rel(got, exact) <= 2 * _rel(ref, exact) + 5e-3, f"tensor {index} (0 = loss)"


@needs_liger
def test_liger_trains_through_train_like_the_stock_run(tiny_llama_dir: Path, tmp_path: Path,
                                                       restore_transformers: None) -> None:
    """The reference's Liger block through `train()`: bf16, 8 steps, per-step losses within 2%."""
    from axolotl.testing import write_rows
    from axolotl.training.sft import train

    write_rows([{"instruction": f"Say {i}.", "input": "", "output": "word " * (i % 7 + 1)} for i in range(64)],
               tmp_path / "data", "jsonl")

    def run(name: str, extra: dict[str, Any]) -> list[float]:
        keys = {"base_model": str(tiny_llama_dir), "learning_rate": 1e-3, "bf16": True, "max_steps": 8,
                "micro_batch_size": 4, "logging_steps": 1, "sequence_len": 256, "sample_packing": True,
                "datasets": [{"path": str(tmp_path / "data.jsonl"), "type": "alpaca"}], "save_strategy": "no",
                "dataset_prepared_path": str(tmp_path / "prepared"), "output_dir": str(tmp_path / name), **extra}
        return train(load(yaml.safe_dump(keys)).cfg).losses

    stock = run("stock", {})
    liger = run("liger", {"plugins": [LIGER], **BLOCK})
    assert len(liger) == len(stock) == 8
    assert liger == pytest.approx(stock, rel=2e-2)


@needs_cce
def test_cut_cross_entropy_matches_the_plain_loss() -> None:
    """bf16 hidden states and head: loss and both gradients against the fp32 formula, bounded by
    2x the error of the plain bf16 formula + 5e-3 for the loss, + 5e-2 for the gradients: CCE drops
    the gradients of logits under its filter, which near-uniform random logits mostly are."""
    from axolotl.integrations.cut_cross_entropy import cut_linear_cross_entropy
    from axolotl.kernels.chunked_ce import IGNORE_INDEX, linear_cross_entropy_reference

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4096, 512, generator=g).cuda()
    weight = (torch.randn(32000, 512, generator=g) / 512**0.5).cuda()
    labels = torch.randint(0, 32000, (4096,), generator=g).cuda()
    labels[::5] = IGNORE_INDEX

    def run(fn: Any, dtype: torch.dtype) -> list[torch.Tensor]:
        h, w = hidden.detach().to(dtype).requires_grad_(), weight.detach().to(dtype).requires_grad_()
        loss = fn(h, w, labels)
        (loss / 1000).backward()
        return [loss.detach().float(), h.grad.float(), w.grad.float()]

    exact = run(linear_cross_entropy_reference, torch.float32)
    plain = run(linear_cross_entropy_reference, torch.bfloat16)
    cut = run(cut_linear_cross_entropy, torch.bfloat16)
    for index, (got, ref, truth) in enumerate(zip(cut, plain, exact)):
        slack = 5e-3 if index == 0 else 5e-2  # gradients: CCE's filter drops p < 2^-12 (2.3% measured on H100)
        assert _rel(got, truth) <= 2 * _rel(ref, truth) + slack, f"tensor {index} (0 = loss)"


@needs_cce
def test_cut_cross_entropy_trains_like_the_stock_loss(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.testing import write_rows
    from axolotl.training.sft import train

    write_rows([{"instruction": f"Say {i}.", "input": "", "output": "word " * (i % 7 + 1)} for i in range(64)],
               tmp_path / "data", "jsonl")

    def run(name: str, extra: dict[str, Any]) -> list[float]:
        keys = {"base_model": str(tiny_llama_dir), "learning_rate": 1e-3, "bf16": True, "max_steps": 8,
                "micro_batch_size": 4, "logging_steps": 1, "sequence_len": 256, "sample_packing": True,
                "datasets": [{"path": str(tmp_path / "data.jsonl"), "type": "alpaca"}], "save_strategy": "no",
                "dataset_prepared_path": str(tmp_path / "prepared"), "output_dir": str(tmp_path / name), **extra}
        return train(load(yaml.safe_dump(keys)).cfg).losses

    assert run("cce", {"plugins": ["axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"]}) == \
        pytest.approx(run("stock", {}), rel=2e-2)
