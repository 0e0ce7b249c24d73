"""Speed options must not change training: `chunked_cross_entropy` and `torch_compile` runs give
the stock run's losses and weights (fp32 on CPU; tolerances stated per test)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from axolotl.models.compile import compile_kwargs, repeated_blocks
from axolotl.testing.configs import load
from axolotl.training.sft import train

from .test_train_e2e import make_cfg, state_dict

STEPS = "max_steps: 3\nmicro_batch_size: 2\ngradient_accumulation_steps: 2\nlogging_steps: 1\n"


def _run(model_dir: Path, tmp: Path, name: str, extra: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    cfg = make_cfg(model_dir, tmp, name, rows=16, extra=STEPS + extra)
    result = train(cfg)
    weights = {} if cfg.adapter else state_dict(Path(cfg.output_dir))
    return result.losses, weights


@pytest.mark.parametrize("layout", ["", "sample_packing: true\n"], ids=["padded", "packed"])
def test_chunked_loss_trains_like_the_stock_loss(tiny_llama_dir: Path, tmp_path: Path, layout: str) -> None:
    """Same losses (rel 1e-5) and weights (atol 1e-5) after 3 accumulated steps."""
    stock_losses, stock_weights = _run(tiny_llama_dir, tmp_path, "stock", layout)
    chunked_losses, chunked_weights = _run(tiny_llama_dir, tmp_path, "chunked",
                                           layout + "chunked_cross_entropy: true\nchunked_cross_entropy_num_chunks: 3\n")
    assert chunked_losses == pytest.approx(stock_losses, rel=1e-5)
    for name, tensor in stock_weights.items():
        torch.testing.assert_close(chunked_weights[name], tensor, atol=1e-5, rtol=0, msg=name)


def test_chunked_loss_with_lora(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    lora = "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n"
    stock_losses, _ = _run(tiny_qwen2_dir, tmp_path, "stock", lora)
    chunked_losses, _ = _run(tiny_qwen2_dir, tmp_path, "chunked", lora + "chunked_cross_entropy: true\n")
    assert chunked_losses == pytest.approx(stock_losses, rel=1e-5)


class _MatmulDtypes(TorchDispatchMode):
    """Counts matrix products by their operands' dtypes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[torch.dtype, ...]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.__name__.split(".")[0] in ("mm", "addmm", "bmm"):
            self.seen[tuple(a.dtype for a in args if isinstance(a, torch.Tensor))] += 1
        return func(*args, **(kwargs or {}))


def test_chunked_loss_keeps_mixed_precision_for_lora(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """The chunked loss calls the decoder itself, past the autocast wrapper on the model's forward;
    the fp32 LoRA adapters must still compute in bf16 (regression: every adapter matmul ran in fp32,
    a quarter of the GPU time of a LoRA step)."""
    cfg = make_cfg(tiny_qwen2_dir, tmp_path, "amp", rows=8, extra="max_steps: 1\nmicro_batch_size: 2\nbf16: true\n"
                   "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\nchunked_cross_entropy: true\n")
    with _MatmulDtypes() as products:
        train(cfg)
    assert products.seen[(torch.bfloat16, torch.bfloat16)] > 0
    assert products.seen[(torch.float32, torch.float32)] == 0, products.seen


def test_chunked_loss_refuses_an_adapted_head(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = make_cfg(tiny_llama_dir, tmp_path, "head", extra=STEPS + "adapter: lora\nlora_target_modules: [q_proj]\n"
                   "lora_modules_to_save: [lm_head]\nchunked_cross_entropy: true\n")
    with pytest.raises(ValueError, match="chunked_cross_entropy: true.*output head"):
        train(cfg)


def test_compiled_layers_train_like_eager(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`aot_eager` traces forward and backward through dynamo/AOTAutograd without a C++ compiler."""
    eager_losses, eager_weights = _run(tiny_llama_dir, tmp_path, "eager", "sample_packing: true\n")
    compiled_losses, compiled_weights = _run(tiny_llama_dir, tmp_path, "compiled", "sample_packing: true\n"
                                             "torch_compile: true\ntorch_compile_backend: aot_eager\n")
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    for name, tensor in eager_weights.items():
        assert "_orig_mod" not in name
        torch.testing.assert_close(compiled_weights[name], tensor, atol=1e-5, rtol=0, msg=name)
    assert set(compiled_weights) == set(eager_weights)


def test_repeated_blocks_are_the_decoder_layers(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    blocks = repeated_blocks(model)
    assert blocks and all(type(block).__name__ == "LlamaDecoderLayer" for block in blocks)
    assert len(blocks) == model.config.num_hidden_layers


def test_compile_mode_and_options_are_exclusive() -> None:
    cfg = load("base_model: m\nlearning_rate: 1.0e-4\ndatasets: [{path: d.jsonl, type: alpaca}]\ntorch_compile: true\n"
               "torch_compile_mode: max-autotune\ntorch_compile_options: {max_autotune: true}\n").cfg
    with pytest.raises(ValueError, match="either `torch_compile_mode` or `torch_compile_options`"):
        compile_kwargs(cfg)


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_refuse_checkpointing(mode: str) -> None:
    from axolotl.testing.configs import config_error

    text = ("base_model: m\nlearning_rate: 1.0e-4\ndatasets: [{path: d.jsonl, type: alpaca}]\ntorch_compile: true\n"
            f"torch_compile_mode: {mode}\ngradient_checkpointing: true\n")
    error = config_error(text)
    assert "torch_compile_mode" in str(error) and "gradient_checkpointing" in str(error)
    assert load(text.replace("gradient_checkpointing: true\n", "")).cfg.torch_compile_mode == mode


def test_cuda_graph_steps_are_marked_only_under_cuda_graph_modes(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.training.sft import AxolotlTrainer

    for mode, expected in (("reduce-overhead", torch.cuda.is_available()), ("default", False)):
        cfg = make_cfg(tiny_llama_dir, tmp_path, mode, rows=4, extra=f"torch_compile: true\ntorch_compile_mode: {mode}\n")
        from transformers import AutoModelForCausalLM, TrainingArguments

        trainer = AxolotlTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                                 args=TrainingArguments(output_dir=str(tmp_path / mode), report_to=[]), axolotl_cfg=cfg)
        assert trainer.marks_graph_steps is expected
