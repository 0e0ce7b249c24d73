"""Cross-field rules: combinations that each key alone allows but that cannot work together.

Each rule is a small function over the validated config yielding ConfigIssues; all rules run
so the user sees every conflict in one pass.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from axolotl.config.dataset_shapes import method_name, type_problem
from axolotl.config.enums import (
    ATTENTION_FLAGS,
    LR_SCHEDULERS,
    ONLINE_RL_METHODS,
    OPTIMIZERS,
    PACKING_CAPABLE_ATTENTION,
    ChatTemplate,
    RLType,
)
from axolotl.config.errors import ConfigIssue, closest
from axolotl.config.schema import AxolotlConfig

Rule = Callable[[AxolotlConfig], Iterable[ConfigIssue]]
RULES: list[Rule] = []

DPO_LOSS_TYPES = frozenset({
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_pair", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
})

LORA_KEYS = ("lora_r", "lora_alpha", "lora_target_modules", "lora_target_linear",
             "lora_modules_to_save", "lora_model_dir", "lora_target_parameters", "peft_use_dora",
             "peft_use_rslora", "loraplus_lr_ratio", "lora_fan_in_fan_out")

DPO_ONLY_KEYS = ("dpo_loss_type", "dpo_loss_weights", "dpo_label_smoothing", "dpo_use_weighting",
                 "dpo_use_logits_to_keep", "dpo_norm_loss", "dpo_padding_free", "dpo_generate_during_eval",
                 "dpo_use_liger_kernel", "dpo_ld_alpha", "rpo_alpha")

METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "kto_desirable_weight": ("kto",), "kto_undesirable_weight": ("kto",),
    "orpo_alpha": ("orpo",), "simpo_gamma": ("simpo",), "cpo_alpha": ("simpo",),
    **dict.fromkeys(DPO_ONLY_KEYS, ("dpo",)),
    "precompute_ref_log_probs": ("dpo", "kto"),
    "max_prompt_len": ("dpo", "kto", "orpo", "simpo", "grpo", "ebft"),
    "ebft": ("ebft",),
}
"""Key -> the `rl:` methods that read it (`rl: ipo` is rewritten to `dpo` before the rules run)."""

OFFLINE_TRL_KEYS: dict[str, frozenset[str]] = {
    "dpo": frozenset({"beta", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps"}),
    "kto": frozenset({"beta", "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps"}),
    "orpo": frozenset(), "simpo": frozenset({"beta"}),
}
"""The `trl:` keys a preference method reads; the others configure the online methods."""


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def check_rules(cfg: AxolotlConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for check in RULES:
        issues.extend(check(cfg))
    return issues


def _set(cfg: AxolotlConfig, key: str) -> bool:
    value = getattr(cfg, key)
    return value not in (None, False, [], {}) and cfg.explicitly_set(key)


@rule
def dataset_types_match_method(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    method = method_name({"rl": cfg.rl, "reward_model": cfg.reward_model,
                          "process_reward_model": cfg.process_reward_model})
    for list_key in ("datasets", "test_datasets"):
        for index, entry in enumerate(getattr(cfg, list_key) or []):
            kind = getattr(entry, "type", None)
            if isinstance(kind, str):
                problem = type_problem(method, kind)
                if problem:
                    yield ConfigIssue((list_key, index, "type"), problem[0], hint=problem[1])


@rule
def method_specific_keys(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    current = cfg.rl.value if cfg.rl else "sft"
    for key, methods in METHOD_KEYS.items():
        if _set(cfg, key) and current not in methods:
            wanted = f"`rl: {methods[0]}`" if len(methods) == 1 else "`rl:` " + " / ".join(methods)
            fix = f"`rl: {methods[0]}`" if len(methods) == 1 else "`rl:` to one of them"
            yield ConfigIssue((key,), f"only valid with {wanted} (this config trains {current})",
                              hint=f"set {fix} or remove `{key}`", related=(("rl",),))


@rule
def dpo_losses(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    losses, weights = cfg.dpo_loss_type, cfg.dpo_loss_weights
    for index, name in enumerate(losses or []):
        if name not in DPO_LOSS_TYPES:
            near = closest(name, DPO_LOSS_TYPES)
            yield ConfigIssue(("dpo_loss_type", index), f"unknown DPO loss `{name}`",
                              hint=f"did you mean `{near[0]}`?" if near else
                              "one of: " + ", ".join(sorted(DPO_LOSS_TYPES)))
    if weights is not None and losses is None:
        yield ConfigIssue(("dpo_loss_weights",), "needs `dpo_loss_type`", hint="list the losses the weights apply to")
    elif weights is not None and losses is not None and len(weights) != len(losses):
        yield ConfigIssue(("dpo_loss_weights",), f"has {len(weights)} weight(s) for {len(losses)} loss type(s)",
                          hint="give exactly one weight per entry of `dpo_loss_type`", value=weights,
                          related=(("dpo_loss_type",),))


@rule
def preference_settings(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """Combinations the preference methods cannot train, whatever the trainer."""
    method = cfg.rl.value if cfg.rl else None
    if method not in OFFLINE_TRL_KEYS:
        return
    if method == "orpo" and cfg.rl_beta is not None:
        yield ConfigIssue(("rl_beta",), "ORPO has no beta (`rl_beta` / `trl.beta`): the weight of its odds-ratio "
                          "term is `orpo_alpha`", hint=f"write `orpo_alpha: {cfg.rl_beta}` instead",
                          value=cfg.rl_beta, related=(("trl", "beta"),))
    if method == "kto" and (cfg.micro_batch_size or 1) < 2:
        yield ConfigIssue(("micro_batch_size",), "KTO estimates its KL term by pairing each prompt with another "
                          "row's completion in the same micro-batch, so it needs at least 2 rows per micro-batch",
                          hint="set `micro_batch_size: 2` or more", value=cfg.micro_batch_size)
    read = OFFLINE_TRL_KEYS[method]
    changed = {key for key, field in type(cfg.trl).model_fields.items()
               if not field.is_required() and getattr(cfg.trl, key) != field.get_default(call_default_factory=True)}
    for key in sorted(changed - read - {"beta"}):  # a beta ORPO cannot use is reported above
        yield ConfigIssue(("trl", key), f"is not read by `rl: {method}`",
                          hint="the `trl:` block configures the online methods (grpo, ebft); "
                               + (f"`rl: {method}` reads only " + ", ".join(f"`trl.{k}`" for k in sorted(read))
                                  if read else f"`rl: {method}` reads none of it"))
    if method != "dpo":
        return
    losses, smoothing = cfg.dpo_loss_type or [], cfg.dpo_label_smoothing or 0.0
    if "exo_pair" in losses and not smoothing:
        yield ConfigIssue(("dpo_loss_type",), "`exo_pair` needs `dpo_label_smoothing` > 0 (its target "
                          "distribution is (1 - smoothing, smoothing))", hint="add `dpo_label_smoothing: 0.001` "
                          "(the EXO paper's value)", related=(("dpo_label_smoothing",),))
    if "robust" in losses and smoothing >= 0.5:
        yield ConfigIssue(("dpo_label_smoothing",), "must be below 0.5 with the `robust` loss (it divides by "
                          "1 - 2 x smoothing)", value=smoothing, hint="use the assumed label-noise rate, e.g. 0.1")
    if cfg.rpo_alpha and "sft" in losses:
        yield ConfigIssue(("rpo_alpha",), "adds the NLL term that `sft` in `dpo_loss_type` already adds",
                          hint="keep one: remove `rpo_alpha`, or the `sft` entry (its `dpo_loss_weights` entry is "
                               "the NLL weight)", related=(("dpo_loss_type",),))
    if cfg.dpo_ld_alpha is not None and not 0.0 <= cfg.dpo_ld_alpha <= 1.0:
        yield ConfigIssue(("dpo_ld_alpha",), "must be between 0 and 1 (1 weights the tokens past the shorter "
                          "response fully, 0 ignores them)", value=cfg.dpo_ld_alpha)


@rule
def one_method(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    chosen = [k for k in ("rl", "reward_model", "process_reward_model") if getattr(cfg, k)]
    if len(chosen) > 1:
        yield ConfigIssue((chosen[1],), f"cannot be combined with `{chosen[0]}`",
                          hint="a config trains one method; keep one of: " + ", ".join(chosen))
    if cfg.pretraining_dataset and cfg.rl:
        yield ConfigIssue(("pretraining_dataset",), f"pretraining data cannot be used with `rl: {cfg.rl.value}`",
                          hint="use `datasets:` in the format of the method")


@rule
def adapter_keys(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.adapter:
        return
    used = [k for k in LORA_KEYS if _set(cfg, k)]
    if used:
        yield ConfigIssue((used[0],), "LoRA settings without an adapter: " + ", ".join(f"`{k}`" for k in used),
                          hint="set `adapter: lora` (or `qlora`), or remove them for a full fine-tune")


@rule
def quantized_loading(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.load_in_4bit and cfg.load_in_8bit:
        yield ConfigIssue(("load_in_8bit",), "cannot be combined with `load_in_4bit`", hint="choose one",
                          related=(("load_in_4bit",),))
    if cfg.load_in_4bit and cfg.adapter != "qlora":
        yield ConfigIssue(("load_in_4bit",), "a 4-bit base can only be trained through a QLoRA adapter",
                          hint="set `adapter: qlora`", related=(("adapter",),))
    if cfg.adapter == "qlora" and not cfg.load_in_4bit:
        yield ConfigIssue(("adapter",), "`adapter: qlora` needs `load_in_4bit: true`",
                          hint="add `load_in_4bit: true`, or use `adapter: lora`", value="qlora",
                          related=(("load_in_4bit",),))
    if cfg.load_in_8bit and not cfg.adapter:
        yield ConfigIssue(("load_in_8bit",), "an 8-bit base cannot be fully fine-tuned",
                          hint="set `adapter: lora`, or remove `load_in_8bit`", related=(("adapter",),))


@rule
def evaluation_source(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.test_datasets and cfg.val_set_size:
        yield ConfigIssue(("val_set_size",), "cannot be used together with `test_datasets`",
                          hint="use `test_datasets` for a separate eval set, or `val_set_size` to split off "
                               "part of `datasets`", value=cfg.val_set_size, related=(("test_datasets",),))


@rule
def one_distributed_engine(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.deepspeed and (cfg.fsdp or cfg.fsdp_config):
        key = "fsdp_config" if cfg.fsdp_config else "fsdp"
        yield ConfigIssue((key,), "cannot be combined with `deepspeed`",
                          hint="choose FSDP (`fsdp_config`) or DeepSpeed (`deepspeed`)", related=(("deepspeed",),))


@rule
def one_attention_backend(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    chosen = [flag for flag in ATTENTION_FLAGS if getattr(cfg, flag)]
    if len(chosen) > 1:
        yield ConfigIssue((chosen[1],), "only one attention backend can be enabled; also set: "
                          + ", ".join(f"`{c}`" for c in chosen if c != chosen[1]),
                          hint="keep exactly one of: " + ", ".join(chosen),
                          related=tuple((c,) for c in chosen))


@rule
def packing_needs_document_masking(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if not cfg.sample_packing:
        return
    attn = cfg.attn_implementation
    if attn and attn not in PACKING_CAPABLE_ATTENTION:
        yield ConfigIssue(("sample_packing",), f"attention `{attn}` cannot keep packed documents apart",
                          hint="use flash_attention, flex_attention or sdp_attention with packing",
                          related=(("attn_implementation",),))


@rule
def streaming_needs_max_steps(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if (cfg.streaming or cfg.pretraining_dataset) and not cfg.max_steps:
        key = "pretraining_dataset" if cfg.pretraining_dataset else "streaming"
        yield ConfigIssue((key,), "streamed datasets have no known length, so `max_steps` is required",
                          hint="add `max_steps: <number of optimizer steps>`")


@rule
def one_precision(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.fp16 and cfg.bf16 is True and cfg.explicitly_set("bf16"):
        yield ConfigIssue(("fp16",), "cannot be combined with `bf16: true`", hint="choose one mixed precision",
                          related=(("bf16",),))


@rule
def exclusive_schedules(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    for first, second in (("eval_steps", "evals_per_epoch"), ("save_steps", "saves_per_epoch"),
                          ("warmup_steps", "warmup_ratio")):
        if getattr(cfg, first) is not None and getattr(cfg, second) is not None:
            yield ConfigIssue((second,), f"cannot be combined with `{first}`", hint="set only one of them",
                          related=((first,),))


@rule
def known_optimizer_and_scheduler(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.optimizer and cfg.optimizer not in OPTIMIZERS:
        near = closest(cfg.optimizer, OPTIMIZERS)
        yield ConfigIssue(("optimizer",), f"unknown optimizer `{cfg.optimizer}`",
                          hint=f"did you mean `{near[0]}`?" if near else "see docs for the optimizer names")
    if cfg.lr_scheduler and cfg.lr_scheduler not in LR_SCHEDULERS:
        near = closest(cfg.lr_scheduler, LR_SCHEDULERS)
        yield ConfigIssue(("lr_scheduler",), f"unknown scheduler `{cfg.lr_scheduler}`",
                          hint=f"did you mean `{near[0]}`?" if near else
                          "one of: " + ", ".join(sorted(LR_SCHEDULERS)))


@rule
def chat_template_sources(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.chat_template_jinja and cfg.chat_template not in (None, ChatTemplate.JINJA):
        yield ConfigIssue(("chat_template_jinja",), f"is only used with `chat_template: jinja` "
                          f"(chat_template is `{cfg.chat_template}`)", hint="set `chat_template: jinja`",
                          related=(("chat_template",),))
    if cfg.chat_template == ChatTemplate.JINJA and not cfg.chat_template_jinja:
        yield ConfigIssue(("chat_template",), "`jinja` needs `chat_template_jinja`",
                          hint="add the template text (or a path to a .jinja file) as `chat_template_jinja`")


@rule
def offloading_needs_checkpointing(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.activation_offloading and not cfg.gradient_checkpointing:
        yield ConfigIssue(("activation_offloading",), "needs `gradient_checkpointing: true`",
                          hint="enable gradient_checkpointing, or remove activation_offloading",
                          related=(("gradient_checkpointing",),))


@rule
def lora_kernels(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """The fused LoRA projections compute plain LoRA on plain weights (axolotl.kernels.lora)."""
    keys = [key for key in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel") if getattr(cfg, key)]
    if not keys:
        return
    off = f"or set {', '.join(f'`{k}`' for k in keys)} to false"
    quantised = "load_in_4bit" if cfg.load_in_4bit else "load_in_8bit" if cfg.load_in_8bit else "adapter"
    conflicts = [
        (not cfg.adapter, "adapter", "fuse LoRA adapters, but no adapter is configured", "set `adapter: lora`"),
        (cfg.adapter == "qlora" or bool(cfg.load_in_4bit or cfg.load_in_8bit), quantised,
         "need unquantised base weights (QLoRA is not supported by the kernels yet)",
         "use `adapter: lora` without 4/8-bit loading"),
        (bool(cfg.lora_dropout), "lora_dropout", "have no dropout", "set `lora_dropout: 0`"),
        (bool(cfg.peft_use_dora), "peft_use_dora", "compute plain LoRA, not DoRA", "turn DoRA off"),
        (bool(cfg.lora_fan_in_fan_out), "lora_fan_in_fan_out", "need (out, in) weights", "remove the key"),
        (cfg.qat is not None, "qat", "read the base weights directly and would skip fake quantisation",
         "remove the `qat:` block"),
        (bool(cfg.rl), "rl", "run in SFT training only so far", "remove `rl:`"),
    ]
    for conflict, other, what, fix in conflicts:
        if conflict:
            yield ConfigIssue((keys[0],), f"the LoRA kernels {what} (`{other}`)", hint=f"{fix}, {off}",
                              related=((other,),))


@rule
def tiled_mlp_shards(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.tiled_mlp_num_shards and not cfg.tiled_mlp:
        yield ConfigIssue(("tiled_mlp_num_shards",), "has no effect without `tiled_mlp: true`",
                          hint="set `tiled_mlp: true` or remove the key", related=(("tiled_mlp",),))
    if cfg.tiled_mlp and cfg.tiled_mlp_use_original_mlp is False:
        yield ConfigIssue(("tiled_mlp_use_original_mlp",), "is not supported yet (a generic Llama MLP in place of "
                          "the model's own)", hint="remove the key: the model's own MLP is tiled")


@rule
def dataset_sharding(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.dataset_shard_idx is not None and cfg.dataset_shard_num is None:
        yield ConfigIssue(("dataset_shard_idx",), "needs `dataset_shard_num`")
    elif cfg.dataset_shard_num and cfg.dataset_shard_idx is not None and cfg.dataset_shard_idx >= cfg.dataset_shard_num:
        yield ConfigIssue(("dataset_shard_idx",), f"must be < dataset_shard_num ({cfg.dataset_shard_num})",
                          value=cfg.dataset_shard_idx)


@rule
def online_rl(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    if cfg.rl not in ONLINE_RL_METHODS:
        return
    trl = cfg.trl
    structured = cfg.rl == RLType.GRPO or cfg.ebft is None or cfg.ebft.mode == "structured"
    if cfg.rl == RLType.GRPO and not trl.reward_funcs:
        yield ConfigIssue(("trl", "reward_funcs"), "GRPO needs at least one reward function",
                          hint="list dotted paths such as `rewards.accuracy` (importable from the working directory)")
    if trl.reward_weights is not None and len(trl.reward_weights) != len(trl.reward_funcs or []):
        yield ConfigIssue(("trl", "reward_weights"), f"has {len(trl.reward_weights)} weight(s) for "
                          f"{len(trl.reward_funcs or [])} reward function(s)", hint="one weight per reward function",
                          related=(("trl", "reward_funcs"),))
    if structured and trl.num_generations:
        if trl.num_generations < 2:
            yield ConfigIssue(("trl", "num_generations"), "must be >= 2 (advantages compare completions of a prompt)",
                              value=trl.num_generations)
        elif (cfg.micro_batch_size or 1) % trl.num_generations:
            yield ConfigIssue(("micro_batch_size",), f"must be divisible by trl.num_generations ({trl.num_generations})",
                              value=cfg.micro_batch_size,
                              hint=f"use micro_batch_size {trl.num_generations} or a multiple of it",
                              related=(("trl", "num_generations"),))
        if trl.generation_batch_size and trl.generation_batch_size % trl.num_generations:
            yield ConfigIssue(("trl", "generation_batch_size"),
                              f"must be divisible by trl.num_generations ({trl.num_generations})",
                              value=trl.generation_batch_size)
    async_keys = [k for k in ("async_prefetch", "streaming_partial_batch") if getattr(trl, k)]
    if trl.replay_buffer_size:
        async_keys.append("replay_buffer_size")
    if async_keys and not trl.use_data_producer:
        yield ConfigIssue(("trl", async_keys[0]), "needs `trl.use_data_producer: true`",
                          hint="the async pipeline runs on the data producer")
    if trl.prefetch_depth is not None and not trl.async_prefetch:
        yield ConfigIssue(("trl", "prefetch_depth"), "sets how far `trl.async_prefetch` generates ahead, but "
                          "async_prefetch is off", hint="set `trl.async_prefetch: true`, or remove prefetch_depth",
                          related=(("trl", "async_prefetch"),))
    for key, needs, on in (("streaming_min_groups", "streaming_partial_batch", trl.streaming_partial_batch),
                           ("replay_recompute_logps", "replay_buffer_size", trl.replay_buffer_size),
                           ("reroll_max_groups", "reroll_start_fraction", trl.reroll_start_fraction < 1.0)):
        # a saved resolved config writes the defaults out: only a value other than the default counts
        if trl.explicitly_set(key) and getattr(trl, key) != type(trl).model_fields[key].default and not on:
            yield ConfigIssue(("trl", key), f"has no effect without `trl.{needs}`",
                              hint=f"set `trl.{needs}`, or remove {key}", related=(("trl", needs),))
    if trl.vllm_lora_sync and not cfg.adapter:
        yield ConfigIssue(("trl", "vllm_lora_sync"), "syncs a LoRA adapter, but no adapter is configured",
                          hint="set `adapter: lora`, or turn vllm_lora_sync off for full weight sync")


VLLM_ONLY_TRL_KEYS = ("vllm_mode", "vllm_guided_decoding_regex", "vllm_enable_sleep_mode", "vllm_sync_interval",
                      "vllm_lora_sync", "vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
                      "vllm_importance_sampling_cap", "vllm_server_host", "vllm_server_port", "vllm_server_timeout")
"""`trl:` keys that only the vLLM generation backend reads."""
PRODUCER_TRL_KEYS = ("vllm_sync_interval", "vllm_importance_sampling_correction", "vllm_importance_sampling_mode",
                     "vllm_importance_sampling_cap")
"""...except these, which the transformers backend's data producer (`trl.use_data_producer`) reads too."""


@rule
def grpo_generation_backend(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """GRPO keys (and structured EBFT's, which runs the GRPO loop) that would be ignored by the
    generation backend the config selects."""
    structured_ebft = cfg.rl == RLType.EBFT and (cfg.ebft is None or cfg.ebft.mode == "structured")
    if cfg.rl != RLType.GRPO and not structured_ebft:
        return
    trl = cfg.trl
    if not trl.use_vllm:
        for key in VLLM_ONLY_TRL_KEYS:
            if trl.use_data_producer and key in PRODUCER_TRL_KEYS:
                continue
            if trl.explicitly_set(key) and getattr(trl, key) not in (None, False):
                yield ConfigIssue(("trl", key), "configures vLLM generation, but `trl.use_vllm` is false",
                                  hint="set `trl.use_vllm: true`, or remove the key to generate with transformers",
                                  related=(("trl", "use_vllm"),))
    elif trl.vllm_enable_sleep_mode and trl.vllm_mode != "colocate":
        yield ConfigIssue(("trl", "vllm_enable_sleep_mode"), "puts the vLLM engine inside the trainer to sleep; it "
                          "needs `trl.vllm_mode: colocate`", related=(("trl", "vllm_mode"),))
    if trl.use_vllm and trl.vllm_enable_sleep_mode and trl.vllm_sync_interval and trl.vllm_sync_interval > 1:
        yield ConfigIssue(("trl", "vllm_sync_interval"), "must be 1 (or unset) with `trl.vllm_enable_sleep_mode`: "
                          "sleeping discards vLLM's weights, so they are pushed again before every generation",
                          value=trl.vllm_sync_interval, related=(("trl", "vllm_enable_sleep_mode"),))


from axolotl.config import ebft_rules as _ebft_rules  # noqa: E402,F401 - registers EBFT's rules (it imports `rule`)


@rule
def cuda_graphs_without_checkpointing(cfg: AxolotlConfig) -> Iterator[ConfigIssue]:
    """CUDA graphs cannot record the recompute of checkpointed layers: torch 2.11 stops at the
    first backward ("graph recording observed an input tensor deallocate"), measured on an H100."""
    mode = cfg.torch_compile_mode
    if cfg.torch_compile and mode in ("reduce-overhead", "max-autotune") and cfg.gradient_checkpointing:
        yield ConfigIssue(("torch_compile_mode",), f"`torch_compile_mode: {mode}` records CUDA graphs, which "
                          "cannot replay gradient checkpointing's recompute", value=mode,
                          hint="use `torch_compile_mode: default` (or leave it unset) with `gradient_checkpointing`",
                          related=(("gradient_checkpointing",),))
