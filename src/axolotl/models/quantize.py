"""Post-training quantisation with torchao (`axolotl quantize`), and the schemes QAT shares.

A `quantization:` (or `qat:`) block names a weight dtype and optionally an activation dtype;
`SCHEMES` maps each supported pair to one torchao config. The same config drives QAT's fake
quantisation (`axolotl.models.qat`), so a model trained with `qat:` is quantised afterwards
with exactly the numerics it was trained against.

What is quantised: every `nn.Linear` except the output head; with `quantize_embedding` also the
input embedding (integer weights only, weight-only) and the output head. The result is saved
with the tokenizer to `output_dir/quantized` in safetensors, loadable with
`AutoModelForCausalLM.from_pretrained` wherever torchao is installed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from axolotl.config.schema.tools import PTQConfig, QATConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

QUANTIZED_DIR_NAME = "quantized"
INSTALL_HINT = "install it with `pip install 'axolotl[torchao]'` (or `pip install torchao`)"


class QuantizationError(ValueError):
    """A quantisation block this build or this machine cannot apply; the message names the key."""


@dataclass(frozen=True)
class Scheme:
    """One (weight, activation) pair: how to build its torchao config and what it needs."""

    description: str
    build: Callable[[int | None], Any]
    """group_size (None = one group per output row) -> torchao config."""
    needs_cuda: bool
    """Quantising (and running) the result needs a CUDA GPU."""
    qat_needs_cuda: bool = False
    """QAT's fake quantisation needs a CUDA GPU (its kernels are Triton)."""
    fixed_group: int | None = None
    """Formats with a block size of their own: `group_size` must be unset or equal to it."""
    groups: bool = True
    """Whether `group_size` means anything for this scheme."""
    per_row: bool = True
    """Whether `group_size: null` (one scale per output row) is possible."""
    min_capability: tuple[int, int] | None = None
    """Oldest CUDA compute capability torchao's kernels for it run on (quantising and QAT alike)."""
    qat: bool = True
    """Whether torchao can derive QAT fake quantisation from the config."""


def _granularity(group_size: int | None) -> Any:
    from torchao.quantization.granularity import PerAxis, PerGroup

    return PerGroup(group_size) if group_size else PerAxis(0)


def _intx_weight_only(bits: str) -> Callable[[int | None], Any]:
    def build(group_size: int | None) -> Any:
        import torch
        from torchao.quantization import IntxWeightOnlyConfig

        return IntxWeightOnlyConfig(weight_dtype=getattr(torch, bits), granularity=_granularity(group_size))

    return build


def _int8_activation_intx_weight(bits: str) -> Callable[[int | None], Any]:
    def build(group_size: int | None) -> Any:
        import torch
        from torchao.quantization import Int8DynamicActivationIntxWeightConfig

        return Int8DynamicActivationIntxWeightConfig(weight_dtype=getattr(torch, bits),
                                                     weight_granularity=_granularity(group_size))

    return build


def _int4_weight_only(group_size: int | None) -> Any:
    from torchao.quantization import Int4WeightOnlyConfig

    return Int4WeightOnlyConfig(group_size=group_size)


def _float8_weight_only(group_size: int | None) -> Any:
    from torchao.quantization import Float8WeightOnlyConfig

    return Float8WeightOnlyConfig()


def _float8_activation_float8_weight(group_size: int | None) -> Any:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())


def _float8_activation_int4_weight(group_size: int | None) -> Any:
    from torchao.quantization import Float8DynamicActivationInt4WeightConfig

    return Float8DynamicActivationInt4WeightConfig()


def _nvfp4(group_size: int | None) -> Any:
    from torchao.prototype.mx_formats import NVFP4DynamicActivationNVFP4WeightConfig

    return NVFP4DynamicActivationNVFP4WeightConfig()


def _mxfp4(group_size: int | None) -> Any:
    import torch
    from torchao.prototype.mx_formats import MXDynamicActivationMXWeightConfig

    return MXDynamicActivationMXWeightConfig(activation_dtype=torch.float4_e2m1fn_x2,
                                             weight_dtype=torch.float4_e2m1fn_x2, block_size=32)


SCHEMES: dict[tuple[str, str | None], Scheme] = {
    ("int8", None): Scheme("int8 weight-only", _intx_weight_only("int8"), needs_cuda=False),
    ("int4", None): Scheme("int4 weight-only (packed, for GPU kernels)", _int4_weight_only, needs_cuda=True,
                           per_row=False),
    ("int8", "int8"): Scheme("int8 dynamic activations, int8 weights", _int8_activation_intx_weight("int8"),
                             needs_cuda=False),
    ("int4", "int8"): Scheme("int8 dynamic activations, int4 weights", _int8_activation_intx_weight("int4"),
                             needs_cuda=False),
    ("float8", None): Scheme("float8 weight-only", _float8_weight_only, needs_cuda=False, groups=False,
                             qat=False),
    ("float8", "float8"): Scheme("float8 dynamic activations, float8 weights (per row)",
                                 _float8_activation_float8_weight, needs_cuda=True, groups=False,
                                 min_capability=(8, 9)),
    ("int4", "float8"): Scheme("float8 dynamic activations, int4 weights", _float8_activation_int4_weight,
                               needs_cuda=True, fixed_group=128, min_capability=(9, 0)),
    ("nvfp4", None): Scheme("NVFP4 activations and weights", _nvfp4, needs_cuda=True, qat_needs_cuda=True,
                            fixed_group=16, min_capability=(10, 0)),
    ("mxfp4", None): Scheme("MXFP4 activations and weights", _mxfp4, needs_cuda=True, qat_needs_cuda=True,
                            fixed_group=32, min_capability=(10, 0)),
}
"""(weight_dtype, activation_dtype) -> scheme. `fp8` is read as `float8`. nvfp4/mxfp4 quantise the
activations to the same format, so their `activation_dtype` stays unset."""

EMBEDDING_BITS = ("int4", "int8")
"""Weight dtypes the input embedding can be quantised to (weight-only)."""


def _canonical(dtype: str | None) -> str | None:
    return "float8" if dtype == "fp8" else dtype


def supported_pairs() -> str:
    return ", ".join(f"{w}" + (f" with {a}" if a else "") for w, a in SCHEMES)


@dataclass(frozen=True)
class Plan:
    """What quantising (or fake-quantising) a model with one block means."""

    key: str
    """`quantization` or `qat`, for messages."""
    scheme: Scheme
    weight_dtype: str
    group_size: int | None
    quantize_embedding: bool
    fake_quant_after_n_steps: int | None = None
    """QAT only: train this many steps before fake quantisation starts."""

    def linear_config(self) -> Any:
        return self.scheme.build(self.group_size)

    def embedding_config(self) -> Any:
        return _intx_weight_only(self.weight_dtype)(self.group_size)

    def describe(self) -> str:
        group = f", groups of {self.group_size}" if self.scheme.groups and self.group_size else ""
        return self.scheme.description + group + (", embeddings too" if self.quantize_embedding else "")


def plan_for(block: PTQConfig | QATConfig, key: str) -> Plan:
    """Check a `quantization:`/`qat:` block against `SCHEMES`; errors name the key and value."""
    weight, activation = _canonical(block.weight_dtype), _canonical(block.activation_dtype)
    scheme = SCHEMES.get((weight, activation))
    if scheme is None:
        given = f"`{key}.weight_dtype: {block.weight_dtype}`" + (
            f" with `{key}.activation_dtype: {block.activation_dtype}`" if activation else " without activation_dtype")
        raise QuantizationError(f"{given} is not a supported combination; supported weight_dtype [with "
                                f"activation_dtype]: {supported_pairs()}")
    group_size = block.group_size
    explicit = block.explicitly_set("group_size") and group_size is not None
    if scheme.fixed_group is not None:
        if explicit and group_size != scheme.fixed_group:
            raise QuantizationError(f"`{key}.group_size: {group_size}` does not apply to {scheme.description}: the "
                                    f"format uses groups of {scheme.fixed_group}; remove the key")
        group_size = scheme.fixed_group
    elif not scheme.groups:
        if explicit:
            raise QuantizationError(f"`{key}.group_size: {group_size}` does not apply to {scheme.description} "
                                    "(scaled per row, not per group); remove the key")
        group_size = None
    elif group_size is None and not scheme.per_row:
        raise QuantizationError(f"`{key}.group_size: null`: {scheme.description} is quantised per group; set "
                                "`group_size` (32, 64, 128 or 256)")
    embedding = bool(block.quantize_embedding)
    if embedding and weight not in EMBEDDING_BITS:
        raise QuantizationError(f"`{key}.quantize_embedding: true` needs `{key}.weight_dtype` int4 or int8 "
                                f"(embeddings are quantised weight-only), not {block.weight_dtype}")
    start = block.fake_quant_after_n_steps if isinstance(block, QATConfig) else None
    return Plan(key, scheme, weight, group_size, embedding, start)


def require_cuda(plan: Plan, qat: bool = False) -> None:
    """Stop before any model loads when the scheme cannot run on this machine's device."""
    import torch

    needs = plan.scheme.qat_needs_cuda if qat else plan.scheme.needs_cuda
    if not needs:
        return
    if not torch.cuda.is_available():
        hint = " (on CPU use `weight_dtype: int8`, or `weight_dtype: int4` with `activation_dtype: int8`)"
        raise QuantizationError(f"`{plan.key}`: {plan.scheme.description} needs a CUDA GPU and none is available"
                                + ("" if qat else hint))
    wanted, found = plan.scheme.min_capability, torch.cuda.get_device_capability()
    if wanted is not None and found < wanted:
        raise QuantizationError(f"`{plan.key}`: {plan.scheme.description} needs a GPU of compute capability "
                                f"{wanted[0]}.{wanted[1]} or newer; {torch.cuda.get_device_name()} is "
                                f"{found[0]}.{found[1]}")


def import_torchao(purpose: str = "`axolotl quantize`") -> None:
    """Import torchao (or say how to install it) without its import-time noise.

    torchao's wheel ships CUDA kernels and logs a warning for each one a CPU-only torch cannot
    load, and torch logs a deprecation note for two of its enums; none of it is actionable here.
    """
    if sys.modules.get("torchao") is not None:
        return
    import torch

    noisy = [logging.getLogger("torch.utils._pytree")]
    if torch.version.cuda is None:
        noisy.append(logging.getLogger("torchao"))
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
        import torchao.prototype.safetensors.safetensors_support  # noqa: F401  (what transformers saves with)
    except ImportError as error:
        raise QuantizationError(f"{purpose} needs torchao, which is not installed: {INSTALL_HINT}") from error
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


def tied_embeddings(model: PreTrainedModel) -> bool:
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and head.weight is embedding.weight


def untie_embeddings(model: PreTrainedModel) -> None:
    """Give the output head its own copy of a tied embedding, so each can be quantised alone."""
    import torch

    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=head.weight.requires_grad)
    model.config.tie_word_embeddings = False
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        text_config.tie_word_embeddings = False


def linear_filter(model: PreTrainedModel, include_head: bool) -> Callable[[torch.nn.Module, str], bool]:
    import torch

    head = model.get_output_embeddings()
    return lambda module, fqn: isinstance(module, torch.nn.Linear) and (include_head or module is not head)


def embedding_filter(model: PreTrainedModel) -> Callable[[torch.nn.Module, str], bool]:
    embedding = model.get_input_embeddings()
    return lambda module, fqn: module is embedding


def quantize_model(model: PreTrainedModel, plan: Plan) -> None:
    """Quantise `model` in place and record how, so `save_pretrained` writes a loadable checkpoint."""
    from torchao.quantization import FqnToConfig, quantize_
    from transformers import TorchAoConfig
    from transformers.quantizers import AutoHfQuantizer

    require_cuda(plan)
    linear = plan.linear_config()
    if plan.quantize_embedding and tied_embeddings(model):
        untie_embeddings(model)
    embedding_name = next(name for name, module in model.named_modules() if module is model.get_input_embeddings())
    try:
        quantize_(model, linear, filter_fn=linear_filter(model, include_head=plan.quantize_embedding))
        if plan.quantize_embedding:
            quantize_(model, plan.embedding_config(), filter_fn=embedding_filter(model))
    except (AssertionError, ImportError, NotImplementedError, RuntimeError, ValueError) as error:
        raise QuantizationError(f"`{plan.key}`: torchao could not apply {plan.scheme.description} on this "
                                f"machine: {str(error).strip() or type(error).__name__}") from error
    quant_type = linear
    if plan.quantize_embedding:  # two configs: the embedding by name, the linear layers by their leaf names
        select = linear_filter(model, include_head=True)
        leaves = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if select(module, name)})
        quant_type = FqnToConfig({embedding_name: plan.embedding_config(),
                                  f"re:(.*\\.)?({'|'.join(map(re.escape, leaves))})": linear})
    config = TorchAoConfig(quant_type=quant_type, include_input_output_embeddings=plan.quantize_embedding)
    model.config.quantization_config = config
    model.hf_quantizer = AutoHfQuantizer.from_config(config, pre_quantized=True)


def save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> Path:
    """Write model and tokenizer to a sibling folder, then swap it in: readers see the old
    folder or the complete new one, never a half-written checkpoint."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    source: str
    plan: Plan


def block_of(cfg: AxolotlConfig) -> tuple[PTQConfig | QATConfig, str]:
    """The `quantization:` block, else the `qat:` block the model was trained with."""
    if cfg.quantization is not None:
        return cfg.quantization, "quantization"
    if cfg.qat is not None:
        return cfg.qat, "qat"
    raise QuantizationError("the config has no `quantization:` block (nor a `qat:` block to reuse); add one, "
                            "e.g. `quantization: {weight_dtype: int8}`")


def model_to_quantize(cfg: AxolotlConfig, base_model: str | None) -> str:
    """`--base-model`, else the full model `train` saved in output_dir, else `base_model`."""
    from axolotl.models.inference import is_adapter_dir, is_model_dir

    if base_model:
        return base_model
    output = Path(cfg.output_dir)
    if is_model_dir(output):
        return str(output)
    if is_adapter_dir(output):
        raise QuantizationError(f"{output} holds a LoRA adapter, not a full model: merge it first with "
                                f"`axolotl merge-lora` and pass `--base-model {output / 'merged'}`")
    return cfg.base_model


def quantize(cfg: AxolotlConfig, base_model: str | None = None) -> QuantizeResult:
    """Quantise the model the config points at and save it to `output_dir/quantized`."""
    from axolotl.models.inference import load_for_inference

    if cfg.hub_model_id:
        raise NotImplementedError("`hub_model_id` is not supported yet by `axolotl quantize` (pushing to the "
                                  "Hugging Face hub); remove it: the model is saved to output_dir/quantized")
    block, key = block_of(cfg)
    plan = plan_for(block, key)
    import_torchao()
    require_cuda(plan)
    source = model_to_quantize(cfg, base_model)
    plain = cfg.model_copy(update={"adapter": None, "lora_model_dir": None, "load_in_4bit": False,
                                   "load_in_8bit": False})
    model, tokenizer = load_for_inference(plain, base_model=source)
    import torch

    if torch.cuda.is_available() and model.device.type == "cpu":
        model.to("cuda")
    quantize_model(model, plan)
    path = save_atomically(model, tokenizer, Path(cfg.output_dir) / QUANTIZED_DIR_NAME)
    return QuantizeResult(path, source, plan)
