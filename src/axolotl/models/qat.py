"""Quantisation-aware training (the `qat:` block) with torchao's QAT API.

`prepare_qat` swaps the layers `axolotl quantize` would quantise for fake-quantised ones, with
the numerics torchao derives from the same scheme (`axolotl.models.quantize.SCHEMES`); training
then sees the rounding noise of the final format. `convert_qat` swaps them back to plain layers
before the model is saved, so the output is an ordinary checkpoint: quantise it afterwards with
`axolotl quantize` and the same config. `fake_quant_after_n_steps: N` trains the first N steps
without the fake quantisation (`FakeQuantStart` turns it on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from axolotl.models.quantize import (
    Plan,
    QuantizationError,
    embedding_filter,
    import_torchao,
    linear_filter,
    plan_for,
    require_cuda,
    tied_embeddings,
    untie_embeddings,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

    from axolotl.config.schema import AxolotlConfig


def qat_plan(cfg: AxolotlConfig) -> Plan | None:
    """The checked `qat:` block, or None without one. Runs before anything is loaded."""
    if cfg.qat is None:
        return None
    if cfg.adapter:
        raise NotImplementedError(f"`qat` with `adapter: {cfg.adapter}` is not supported yet "
                                  "(QAT fake-quantises the full model's layers); remove one of them")
    plan = plan_for(cfg.qat, "qat")
    if not plan.scheme.qat:
        raise QuantizationError(f"`qat`: torchao has no quantisation-aware training for {plan.scheme.description}; "
                                "use it with `quantization:` (post-training) only")
    import_torchao("`qat`")
    require_cuda(plan, qat=True)
    return plan


def fake_quantizers(model: torch.nn.Module) -> list[torch.nn.Module]:
    from torchao.quantization.qat import FakeQuantizerBase

    return [module for module in model.modules() if isinstance(module, FakeQuantizerBase)]


def set_fake_quant(model: torch.nn.Module, enabled: bool) -> None:
    for quantizer in fake_quantizers(model):
        quantizer.enabled = enabled


def prepare_qat(model: PreTrainedModel, plan: Plan) -> None:
    """Swap the layers `axolotl quantize` would quantise for fake-quantised ones, in place."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    if plan.quantize_embedding and tied_embeddings(model):
        untie_embeddings(model)
    try:
        quantize_(model, QATConfig(plan.linear_config(), step="prepare"),
                  filter_fn=linear_filter(model, include_head=plan.quantize_embedding))
        if plan.quantize_embedding:
            quantize_(model, QATConfig(plan.embedding_config(), step="prepare"), filter_fn=embedding_filter(model))
    except (AssertionError, ImportError, NotImplementedError, RuntimeError, ValueError) as error:
        raise QuantizationError(f"`qat`: torchao could not prepare {plan.scheme.description}: "
                                f"{str(error).strip() or type(error).__name__}") from error


def convert_qat(model: torch.nn.Module) -> None:
    """Swap fake-quantised layers back to plain `nn.Linear`/`nn.Embedding` (same weights)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    fake = (FakeQuantizedLinear, FakeQuantizedEmbedding, *_prototype_fake_linears())
    quantize_(model, QATConfig(step="convert"), filter_fn=lambda module, fqn: isinstance(module, fake))


def _prototype_fake_linears() -> tuple[type, ...]:
    try:
        from torchao.prototype.qat import MXFakeQuantizedLinear, NVFP4FakeQuantizedLinear
    except ImportError:
        return ()
    return MXFakeQuantizedLinear, NVFP4FakeQuantizedLinear


class FakeQuantStart(TrainerCallback):
    """`fake_quant_after_n_steps`: fake quantisation off for the first `start` steps, then on
    (also right away when a run resumes past that step)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            set_fake_quant(model, state.global_step >= self.start)


def apply_qat(model: PreTrainedModel, plan: Plan | None) -> list[TrainerCallback]:
    """Prepare `model` for QAT when there is a plan; the callbacks the Trainer needs for it."""
    if plan is None:
        return []
    prepare_qat(model, plan)
    start = plan.fake_quant_after_n_steps
    if not start:
        return []
    set_fake_quant(model, False)
    return [FakeQuantStart(start)]
