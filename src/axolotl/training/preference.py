"""Preference training (`rl: dpo | kto | orpo | simpo`) on TRL's trainers, read top to bottom.

config -> refusals (`preflight`, run by `sft.train` before it dispatches here) -> tokenizer ->
preference data (`axolotl.data.preference`: text columns `prompt`, `chosen`, `rejected`; for KTO
`prompt`, `completion`, `label`) -> prompts cut to `max_prompt_len` -> the method's TRL config
(`axolotl.training.preference_args`) -> model (+ adapter) -> reference -> TRL trainer -> train ->
the outputs of an SFT run: model or adapter, tokenizer, resolved config, metrics.json, loss plot.

Reference (DPO, KTO): with an adapter, the frozen base model itself, scored with the adapter
switched off; no second model is loaded. TRL 1.16 would copy the adapter into a frozen "ref"
adapter and score with that; we remove the copy so the reference is the base in every case
(also when training continues from `lora_model_dir`) and only the trained adapter is saved. A full
fine-tune scores against a frozen copy of the loaded model made before the first step (same
weights, dtype and resized embeddings); `precompute_ref_log_probs: true` scores the data once with
the untrained policy instead and keeps no copy. ORPO and SimPO use no reference.

Logged metrics (TRL's names, averaged over each logging interval, `eval_`-prefixed in evaluation):
DPO/ORPO/SimPO `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies`,
`logps/*`, `logits/*`; KTO `kl` and the per-class `rewards/chosen` (desirable rows) and
`rewards/rejected` (undesirable rows); ORPO also `nll_loss`, `log_odds_ratio`, `log_odds_chosen`.
They reach the console line, every tracker, `log_history` and metrics.json (`PREFERENCE_METRICS`
in `train_loss_history`; evaluations keep every key).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from transformers import TrainerCallback, set_seed
from trl import DPOTrainer, KTOTrainer
from trl.import_utils import TRLExperimentalWarning

from axolotl.data.preference import prepare_preference_datasets
from axolotl.models.adapters import apply_adapter
from axolotl.models.compile import compile_layers
from axolotl.models.model import load_model
from axolotl.models.tokenizer import load_tokenizer
from axolotl.training.args import TrainingConfigError, tracker_environment
from axolotl.training.module_walks import CachedModuleWalks
from axolotl.training.optimizer import OptimizationMixin
from axolotl.training.preference_args import REFERENCE_METHODS, build_preference_args, method_of
from axolotl.training.progress import use_progress
from axolotl.training.sft import TrainResult, _callbacks, run_and_publish
from axolotl.training.support import NotSupportedYet

with warnings.catch_warnings():  # "APIs here are unstable": ORPO and CPO live there in TRL 1.16
    warnings.simplefilter("ignore", TRLExperimentalWarning)
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase, TrainingArguments

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)

PREFERENCE_METRICS = (
    "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
    "logps/rejected", "logits/chosen", "logits/rejected", "kl", "nll_loss", "log_odds_ratio",
    "log_odds_chosen", "entropy", "mean_token_accuracy",
)
"""Training-log keys of the preference trainers kept in metrics.json's `train_loss_history`."""


def use_base_as_reference(model: Any) -> None:
    """Remove the frozen "ref" copy of the adapter that TRL adds to a PEFT model: TRL then scores
    the reference with the adapter switched off, i.e. with the frozen base model."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")


class PreferenceTrainerMixin(CachedModuleWalks, OptimizationMixin):
    """What our runs add to TRL's trainers, as `AxolotlTrainer` does for SFT: the console progress
    line with throughput, our parameter groups and schedules (`OptimizationMixin`), the per-step
    module walks done once (`CachedModuleWalks`); and token counting for ORPO/SimPO batches, and
    the base model as the reference of an adapter."""

    def __init__(self, *args: Any, axolotl_cfg: AxolotlConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axolotl_cfg = axolotl_cfg
        self.progress = use_progress(self)
        use_base_as_reference(self.model)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        self.prepare_cached_walks()
        return super().training_step(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.progress is not None:  # before TRL adds its metrics and the Trainer dispatches the log
            self.progress.annotate(logs, self.state, self.args.world_size)
        super().log(logs, start_time)

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        """ORPO/CPO batches hold `chosen_*` and `rejected_*` rows instead of `input_ids`."""
        if "input_ids" in inputs or "chosen_attention_mask" not in inputs:
            super()._track_num_input_tokens(inputs)
        elif self.args.include_num_input_tokens_seen != "no":
            tokens = inputs["chosen_attention_mask"].sum() + inputs["rejected_attention_mask"].sum()
            self.state.num_input_tokens_seen += self.accelerator.gather(tokens.to(self.args.device)).sum().item()


class AxolotlDPOTrainer(PreferenceTrainerMixin, DPOTrainer):
    """TRL's DPO trainer (all DPO losses, IPO, RPO) for `rl: dpo`."""


class AxolotlKTOTrainer(PreferenceTrainerMixin, KTOTrainer):
    """TRL's KTO trainer for `rl: kto`."""


class AxolotlORPOTrainer(PreferenceTrainerMixin, ORPOTrainer):
    """TRL's ORPO trainer for `rl: orpo`."""


class AxolotlCPOTrainer(PreferenceTrainerMixin, CPOTrainer):
    """TRL's CPO trainer with the SimPO loss for `rl: simpo`."""


TRAINERS: dict[str, type] = {"dpo": AxolotlDPOTrainer, "kto": AxolotlKTOTrainer, "orpo": AxolotlORPOTrainer,
                             "simpo": AxolotlCPOTrainer}


def truncate_prompts(rows: datasets.Dataset | None, tokenizer: PreTrainedTokenizerBase,
                     max_prompt_len: int | None) -> datasets.Dataset | None:
    """Keep the end of every prompt (the part next to the completion) so that it tokenizes to at
    most `max_prompt_len` tokens, counting the BOS token the trainers add.

    TRL 1.16's trainers have no prompt limit; the cut is made in the text at a token boundary
    (offsets of a fast tokenizer), so the trainer tokenizes the kept text to the same tokens up to
    the first one, which can merge differently at the cut."""
    if rows is None or not max_prompt_len:
        return rows
    budget = max_prompt_len - (1 if tokenizer.bos_token_id is not None else 0)
    if budget < 1:
        raise TrainingConfigError(f"`max_prompt_len: {max_prompt_len}` leaves no room for prompt text next to "
                                  "the BOS token; use at least 2")
    if not getattr(tokenizer, "is_fast", False):
        raise NotSupportedYet("`max_prompt_len` is not supported yet with a slow (Python) tokenizer: the prompt "
                              "is cut at token offsets, which only fast tokenizers report")
    if getattr(rows.features.get("prompt"), "dtype", None) != "string":
        raise TrainingConfigError("`max_prompt_len` needs prompts as text; the preference data has a `prompt` "
                                  f"column of type {rows.features.get('prompt')}")

    def cut(batch: dict[str, list[Any]]) -> dict[str, list[str]]:
        encoded = tokenizer(batch["prompt"], add_special_tokens=False, return_offsets_mapping=True)
        return {"prompt": [prompt if len(offsets) <= budget else prompt[offsets[-budget][0]:]
                           for prompt, offsets in zip(batch["prompt"], encoded["offset_mapping"])]}

    return rows.map(cut, batched=True, desc=f"Keeping the last {max_prompt_len} prompt tokens")


def reference_model(cfg: AxolotlConfig, model: Any) -> Any:
    """A frozen copy of `model` for a full fine-tune of a reference method; None where TRL needs no
    copy (an adapter: the base with the adapter off; precomputed reference log-probs)."""
    if method_of(cfg) not in REFERENCE_METHODS or cfg.adapter or cfg.precompute_ref_log_probs:
        return None
    return copy.deepcopy(model).requires_grad_(False).eval()


def build_preference_trainer(cfg: AxolotlConfig, model: Any, tokenizer: PreTrainedTokenizerBase,
                             train_rows: datasets.Dataset, eval_rows: datasets.Dataset | None,
                             args: TrainingArguments, callbacks: Sequence[TrainerCallback] = ()) -> Any:
    """The TRL trainer of `cfg.rl`, with its reference model where the method has one."""
    method = method_of(cfg)
    kwargs: dict[str, Any] = {
        "model": model, "args": args, "train_dataset": train_rows,
        "eval_dataset": eval_rows if args.eval_strategy != "no" else None,
        "processing_class": tokenizer, "callbacks": list(callbacks), "axolotl_cfg": cfg,
    }
    if method in REFERENCE_METHODS:
        kwargs["ref_model"] = reference_model(cfg, model)
    return TRAINERS[method](**kwargs)


def train_preference(cfg: AxolotlConfig, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """`axolotl.training.sft.train` for `rl:` configs (it runs `preflight` and dispatches here)."""
    os.environ.update(tracker_environment(cfg))
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_preference_datasets(cfg, tokenizer)
    train_rows = truncate_prompts(prepared.train, tokenizer, cfg.max_prompt_len)
    eval_rows = truncate_prompts(prepared.eval, tokenizer, cfg.max_prompt_len)
    args = build_preference_args(cfg, has_eval=eval_rows is not None and len(eval_rows) > 0)
    set_seed(args.seed)
    model = apply_adapter(cfg, load_model(cfg, tokenizer))
    if cfg.lora_dropout:
        LOG.warning("lora_dropout %s is switched off: preference training disables dropout so that policy and "
                    "reference log-probs differ only by the training (TRL's disable_dropout)", cfg.lora_dropout)
    callbacks, stopper, watchdog = _callbacks(cfg)
    callbacks.extend(extra_callbacks)
    trainer = build_preference_trainer(cfg, model, tokenizer, train_rows, eval_rows, args, callbacks)
    compile_layers(model, cfg)  # after the reference copy was taken, which stays eager
    return run_and_publish(trainer, cfg, stopper, watchdog, extra_keys=PREFERENCE_METRICS)
