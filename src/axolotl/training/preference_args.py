"""Config -> the TRL config of a preference method, and what preference training refuses.

Every TRL config subclasses `TrainingArguments`, so each one starts from `training_args_kwargs`
(the SFT mapping in `axolotl.training.args`) and adds the keys of its method:

| config key                                   | TRL config field                                          |
|----------------------------------------------|-----------------------------------------------------------|
| sequence_len                                 | max_length (all)                                          |
| rl_beta (= trl.beta)                         | beta: DPO, KTO, SimPO (ORPO: a config error)              |
| dpo_loss_type, dpo_loss_weights              | DPO loss_type, loss_weights (`aot_pair` = `aot_unpaired`) |
| dpo_norm_loss                                | DPO loss `sigmoid` -> `sigmoid_norm`                      |
| rpo_alpha                                    | DPO loss `sft` added with weight rpo_alpha                |
| dpo_label_smoothing, dpo_use_weighting, dpo_ld_alpha | DPO label_smoothing, use_weighting, ld_alpha      |
| precompute_ref_log_probs, pad_to_multiple_of, remove_unused_columns | DPO, KTO: same names       |
| trl.sync_ref_model, .ref_model_mixup_alpha, .ref_model_sync_steps | DPO, KTO: same names         |
| kto_desirable_weight, kto_undesirable_weight | KTO desirable_weight, undesirable_weight                  |
| orpo_alpha                                   | ORPO beta                                                 |
| cpo_alpha, simpo_gamma                       | CPO cpo_alpha, simpo_gamma (with loss_type="simpo")       |
| dataset_num_proc                             | dataset_num_proc (all)                                    |

Fixed for every method: `gradient_checkpointing=False` (the model loader sets checkpointing up;
its kwargs are passed so TRL re-enables it the same way after a reference forward) and
`disable_dropout=True` (TRL's default: policy and reference log-probs must not differ by dropout
noise; this includes `lora_dropout`). KTO samples sequentially (its KL term pairs each row with
its neighbour in the batch). `max_prompt_len` is applied to the data before the trainer sees it
(`axolotl.training.preference.truncate_prompts`). Unset keys keep TRL's defaults.

Keys and combinations that TRL 1.16 cannot honour are refused by `preference_refusals` before
anything loads; combinations that are wrong whatever the trainer are config rules
(`axolotl.config.rules`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from axolotl.training.args import training_args_kwargs

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from axolotl.config.schema import AxolotlConfig

PREFERENCE_METHODS = ("dpo", "ipo", "kto", "orpo", "simpo")
"""`rl:` values trained by `axolotl.training.preference` (`ipo` is rewritten to `dpo` when the config loads)."""

REFERENCE_METHODS = frozenset({"dpo", "ipo", "kto"})
"""Methods that score against a frozen reference model."""

TRL_LOSS_NAMES = {"aot_pair": "aot_unpaired"}
"""Our DPO loss names (the reference documentation's) that TRL 1.16 spells differently."""

LABEL_SMOOTHING_LOSSES = frozenset({"robust", "exo_pair", "aot", "aot_pair"})
"""The DPO losses in which TRL 1.16 uses `label_smoothing`."""

NORMALISED_LOSSES = frozenset({"sigmoid", "sigmoid_norm", "ipo", "sft"})
"""Losses `dpo_norm_loss` can apply to: sigmoid becomes sigmoid_norm; ipo is length-normalised
already; sft is a mean over tokens."""

SYNC_REF_KEYS = ("sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps")


def _on(value: Any) -> bool:
    return value not in (None, False, "", [], {}, 0)


PREFERENCE_REFUSED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sample_packing": (_on, "packing preference pairs (each pair is padded in its own row)"),
    "eval_sample_packing": (_on, "packing preference pairs for evaluation"),
    "pad_to_sequence_len": (_on, "padding every preference batch to sequence_len"),
    "group_by_length": (_on, "length-grouped sampling of preference data"),
    "chunked_cross_entropy": (_on, "the chunked SFT loss (TRL computes the preference losses)"),
    "neftune_noise_alpha": (_on, "NEFTune noise (it would also reach the reference forward)"),
    "activation_offloading": (_on, "activation offloading in preference training"),
    "gradient_checkpointing": (lambda v: v in ("offload", "offload_disk"), "offloading checkpointed activations "
                               "in preference training; use `gradient_checkpointing: true`"),
    "qat": (lambda v: v is not None, "quantisation-aware preference training"),
    "train_on_inputs": (lambda v: v is True, "training on prompt tokens (preference losses score completions)"),
    "dpo_padding_free": (_on, "padding-free DPO (TRL 1.16 turned it off and falls back to padding)"),
    "dpo_use_logits_to_keep": (_on, "logits_to_keep in DPO (TRL 1.16 removed it; its fused LM head already "
                                    "computes log-probs without materialising the logits, so leave the key out)"),
    "dpo_generate_during_eval": (_on, "generating samples during DPO evaluation"),
    "dpo_use_liger_kernel": (_on, "the Liger fused DPO loss"),
}
"""Key -> (is it turned on?, the feature it asks for), refused for every preference method."""


def method_of(cfg: AxolotlConfig) -> str:
    """`cfg.rl` as the plain method name, `ipo` folded into `dpo`."""
    name = str(cfg.rl)
    return "dpo" if name == "ipo" else name


def dpo_losses(cfg: AxolotlConfig) -> tuple[list[str], list[float] | None]:
    """`(loss_type, loss_weights)` of the DPOConfig: our names mapped to TRL's, `dpo_norm_loss`
    and `rpo_alpha` folded in (RPO is DPO plus `rpo_alpha` x the NLL of the chosen completion)."""
    names = list(cfg.dpo_loss_type or (["ipo"] if str(cfg.rl) == "ipo" else ["sigmoid"]))
    weights = list(cfg.dpo_loss_weights) if cfg.dpo_loss_weights else None
    if cfg.dpo_norm_loss:
        names = ["sigmoid_norm" if name == "sigmoid" else name for name in names]
    if cfg.rpo_alpha:
        weights = (weights or [1.0] * len(names)) + [float(cfg.rpo_alpha)]
        names.append("sft")
    return [TRL_LOSS_NAMES.get(name, name) for name in names], weights


def preference_refusals(cfg: AxolotlConfig) -> list[str]:
    """One message per key or combination of `cfg` that preference training cannot honour yet."""
    method = method_of(cfg)
    messages = [f"`{key}` is not supported yet with `rl: {method}` ({feature})"
                for key, (is_on, feature) in PREFERENCE_REFUSED.items()
                if key in type(cfg).model_fields and is_on(getattr(cfg, key))
                and not (key in ("eval_sample_packing", "pad_to_sequence_len") and cfg.sample_packing)]
    if cfg.eval_sequence_len not in (None, cfg.sequence_len):
        messages.append(f"`eval_sequence_len` is not supported yet with `rl: {method}` (one max length, "
                        "`sequence_len`, bounds training and evaluation pairs)")
    if method in ("orpo", "simpo") and cfg.pad_to_multiple_of:
        messages.append(f"`pad_to_multiple_of` is not supported yet with `rl: {method}` (TRL's ORPO/CPO "
                        "collator pads to the longest row)")
    if method == "dpo":
        losses = list(cfg.dpo_loss_type or ["sigmoid"])
        if cfg.dpo_label_smoothing and not LABEL_SMOOTHING_LOSSES & set(losses):
            messages.append(f"`dpo_label_smoothing` is not supported yet with dpo_loss_type {losses} (TRL 1.16 "
                            f"uses it only in {sorted(LABEL_SMOOTHING_LOSSES)}; for label-noise-robust DPO use "
                            "`dpo_loss_type: [robust]`)")
        if cfg.dpo_norm_loss and set(losses) - NORMALISED_LOSSES:
            messages.append(f"`dpo_norm_loss` is not supported yet with dpo_loss_type "
                            f"{sorted(set(losses) - NORMALISED_LOSSES)} (TRL 1.16 has a length-normalised "
                            "variant of `sigmoid` only; `ipo` is normalised already)")
        if cfg.dpo_use_weighting and {"aot", "aot_pair"} & set(losses):
            messages.append("`dpo_use_weighting` is not supported yet with the `aot` / `aot_pair` losses "
                            "(they sort the batch, which would misalign the per-pair weights)")
    if method in REFERENCE_METHODS and cfg.trl.sync_ref_model and cfg.adapter:
        messages.append(f"`trl.sync_ref_model` is not supported yet with `adapter: {cfg.adapter}` (the reference "
                        "is the base model with the adapter switched off; there is no copy to sync)")
    return messages


def _beta(cfg: AxolotlConfig) -> dict[str, Any]:
    return {} if cfg.rl_beta is None else {"beta": float(cfg.rl_beta)}


def _reference(cfg: AxolotlConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"precompute_ref_log_probs": bool(cfg.precompute_ref_log_probs)}
    if cfg.remove_unused_columns is not None:  # ORPO/CPO always keep their columns (TRL sets it false)
        kwargs["remove_unused_columns"] = cfg.remove_unused_columns
    if cfg.pad_to_multiple_of:
        kwargs["pad_to_multiple_of"] = cfg.pad_to_multiple_of
    if cfg.trl.sync_ref_model:
        kwargs.update({key: getattr(cfg.trl, key) for key in SYNC_REF_KEYS if getattr(cfg.trl, key) is not None})
    return kwargs


def _dpo(cfg: AxolotlConfig) -> tuple[type, dict[str, Any]]:
    from trl import DPOConfig

    losses, weights = dpo_losses(cfg)
    kwargs: dict[str, Any] = {"loss_type": losses, "loss_weights": weights,
                              "label_smoothing": float(cfg.dpo_label_smoothing or 0.0),
                              "use_weighting": bool(cfg.dpo_use_weighting), "ld_alpha": cfg.dpo_ld_alpha}
    return DPOConfig, {**_beta(cfg), **_reference(cfg), **kwargs}


def _kto(cfg: AxolotlConfig) -> tuple[type, dict[str, Any]]:
    from trl import KTOConfig

    weights = {"desirable_weight": cfg.kto_desirable_weight, "undesirable_weight": cfg.kto_undesirable_weight}
    return KTOConfig, {**_beta(cfg), **_reference(cfg), "train_sampling_strategy": "sequential",
                       **{key: float(value) for key, value in weights.items() if value is not None}}


def _orpo(cfg: AxolotlConfig) -> tuple[type, dict[str, Any]]:
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig, {} if cfg.orpo_alpha is None else {"beta": float(cfg.orpo_alpha)}


def _simpo(cfg: AxolotlConfig) -> tuple[type, dict[str, Any]]:
    from trl.experimental.cpo import CPOConfig

    extra = {"cpo_alpha": cfg.cpo_alpha, "simpo_gamma": cfg.simpo_gamma}
    return CPOConfig, {**_beta(cfg), "loss_type": "simpo",
                       **{key: float(value) for key, value in extra.items() if value is not None}}


METHOD_CONFIGS: dict[str, Callable[[AxolotlConfig], tuple[type, dict[str, Any]]]] = {
    "dpo": _dpo, "kto": _kto, "orpo": _orpo, "simpo": _simpo,
}
"""Method -> (its TRL config class, the keyword arguments our config adds)."""


def build_preference_args(cfg: AxolotlConfig, has_eval: bool) -> TrainingArguments:
    """The TRL config (a `TrainingArguments`) of `cfg.rl`; `has_eval` as in `build_training_args`."""
    kwargs = training_args_kwargs(cfg, has_eval)
    config_class, method_kwargs = METHOD_CONFIGS[method_of(cfg)](cfg)
    kwargs.update(max_length=cfg.sequence_len, dataset_num_proc=cfg.dataset_num_proc,
                  gradient_checkpointing=False, disable_dropout=True)
    if cfg.gradient_checkpointing:
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False, **(cfg.gradient_checkpointing_kwargs or {})}
    kwargs.update(method_kwargs)
    return config_class(**kwargs)
