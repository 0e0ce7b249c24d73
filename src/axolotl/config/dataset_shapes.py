"""Which dataset entry shape and `type:` names are valid for the configured method.

The same `datasets:` key holds SFT rows, preference pairs, KTO labels or step-labelled traces
depending on `rl:` / `reward_model` / `process_reward_model`; validating an entry against the
wrong shape gives baffling errors, so the shape is chosen first, then the entry is checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from axolotl.config.enums import PAIRWISE_PREFERENCE_METHODS, RLType
from axolotl.config.errors import closest
from axolotl.config.schema.datasets import (
    DPODataset,
    KTODataset,
    PretrainingDataset,
    SFTDataset,
    StepwiseSupervisedDataset,
)

SFT_TYPES = frozenset({
    "alpaca", "alpaca_chat", "alpaca_chat.load_qa", "alpaca_chat.load_concise",
    "alpaca_chat.load_camel_ai", "alpaca_w_system.load_open_orca", "alpaca_instruct",
    "jeopardy", "oasst", "gpteacher", "reflection", "explainchoice", "concisechoice",
    "summarizetldr", "context_qa", "context_qa.load_v2", "context_qa.load_404",
    "creative_acr.load_answer", "creative_acr.load_critique", "creative_acr.load_revise",
    "metharme", "pygmalion", "chat_template", "completion", "input_output", "orcamini",
    "llama2_chat", "messages.chat", "user_defined",
})

_PAIR_FAMILIES = ("argilla", "argilla_chat", "icr", "intel", "prompt_pairs", "ultra")
DPO_TYPES = frozenset(
    {f"chatml.{f}" for f in _PAIR_FAMILIES} | {f"llama3.{f}" for f in _PAIR_FAMILIES}
    | {"chatml", "chatml.default", "llama3", "llama3.default", "zephyr.nectar", "chat_template.default",
       "chat_template.argilla", "user_defined.default", "passthrough"}
)
_KTO_FAMILIES = ("argilla", "argilla_chat", "intel", "prompt_pairs", "ultra")
KTO_TYPES = frozenset(
    {f"chatml.{f}" for f in _KTO_FAMILIES} | {f"llama3.{f}" for f in _KTO_FAMILIES}
    | {"user_defined.default"}
)
REWARD_TYPES = frozenset({"bradley_terry.chat_template", "bradley_terry.llama3.icr"})
STEPWISE_TYPES = frozenset({"stepwise_supervised"})
EBFT_TYPES = frozenset({
    "ebft_opencode.transform", "ebft_strided_structured.transform", "ebft_strided_chat.transform",
    "ebft_chat_multiturn.transform", "ebft_chat_multiturn.transform_last_turn",
    "ebft_chat_multiturn.transform_all_turns", "ebft_reasoning.transform", "ebft_pretrain.transform",
})
PRETRAINING_TYPES = frozenset({"pretrain"})


def method_name(cfg: dict[str, Any]) -> str:
    """A short name for the training method, as used in messages."""
    if cfg.get("process_reward_model"):
        return "process_reward_model"
    if cfg.get("reward_model"):
        return "reward_model"
    return str(cfg.get("rl") or "sft")


def entry_class(cfg: dict[str, Any], list_key: str, entry: Any) -> type[BaseModel]:
    """The entry model for one element of `datasets` / `test_datasets` / `pretraining_dataset`."""
    if list_key == "pretraining_dataset":
        keys = set(entry) if isinstance(entry, dict) else set()
        pretrain_keys = set(PretrainingDataset.model_fields)
        is_plain = keys <= pretrain_keys and (entry.get("type") in (None, "pretrain"))
        return PretrainingDataset if is_plain else SFTDataset
    method = method_name(cfg)
    if method == "process_reward_model":
        return StepwiseSupervisedDataset
    if method in {m.value for m in PAIRWISE_PREFERENCE_METHODS}:
        return DPODataset
    if method == RLType.KTO:
        return KTODataset
    return SFTDataset


def builtin_types_for(method: str) -> frozenset[str]:
    if method in {m.value for m in PAIRWISE_PREFERENCE_METHODS}:
        return DPO_TYPES
    if method == RLType.KTO:
        return KTO_TYPES
    if method == "reward_model":
        return REWARD_TYPES
    if method == "process_reward_model":
        return STEPWISE_TYPES
    if method == RLType.EBFT:
        return EBFT_TYPES
    if method == RLType.GRPO:
        return frozenset()
    return SFT_TYPES


ALL_BUILTIN_TYPES = SFT_TYPES | DPO_TYPES | KTO_TYPES | REWARD_TYPES | STEPWISE_TYPES | EBFT_TYPES


def type_problem(method: str, type_name: str) -> tuple[str, str] | None:
    """(message, hint) when `type_name` cannot be used with `method`, else None.

    Names of built-in strategies are checked exactly. Other dotted names are the user's own
    `module.function` transforms, resolved from the working directory at load time.
    """
    valid = builtin_types_for(method)
    if type_name in valid:
        return None
    if type_name in ALL_BUILTIN_TYPES:
        owners = sorted(m for m in _METHODS if type_name in builtin_types_for(m))
        hint = (f"with {method} use one of: " + ", ".join(sorted(valid)[:8]) if valid
                else f"{method} datasets use a `module.function` transform of your own")
        return f"dataset type `{type_name}` is for {' / '.join(owners)}, not {method}", hint
    family = type_name.split(".")[0]
    builtin_families = {name.split(".")[0] for name in ALL_BUILTIN_TYPES}
    if "." not in type_name or family in builtin_families:
        near = closest(type_name, valid)
        hint = f"did you mean `{near[0]}`?" if near else (
            "use a built-in type (see `axolotl agent-docs`) or `module.function` for your own transform")
        return f"unknown dataset type `{type_name}` for {method}", hint
    return None


_METHODS = ("sft", "dpo", "orpo", "simpo", "kto", "grpo", "ebft", "reward_model", "process_reward_model")
