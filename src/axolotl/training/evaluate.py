"""`evaluate(cfg)`: loss and perplexity of a model on the config's eval split (and optionally its
train split), through the data path and the Trainer that training uses.

config -> refusals -> which model (trained output or base) -> tokenizer -> prepared data (the
same cache key as `train`) -> TrainingArguments -> model (+ adapter) -> `build_trainer` ->
`Trainer.evaluate` per split -> `output_dir/eval_metrics.json`.

Because the Trainer, its eval dataloader (packed under `eval_sample_packing`, else padded), the
collator and `eval_batch_size` are those of `train`, `eval_loss` here is the number the trainer
logs when it evaluates the same weights (pinned by tests/training/test_evaluate.py). Like the
Trainer's, it is the mean over eval batches of each batch's per-token loss; `eval_perplexity` is
its exponential.

Which model: by default the trained output in `output_dir` (full weights, or for a config with
`adapter` the adapter saved there, over `base_model`), else `base_model` (with `lora_model_dir`
when set). `model="trained"` or `"base"` pick one explicitly; the choice is written to the
metrics file.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.config.render import atomic_write_text
from axolotl.models.inference import is_adapter_dir, is_model_dir

# torch, transformers and the data pipeline are imported where they are used, so a config without
# an eval split (or a missing trained model) is reported before seconds of imports.
if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

LOG = logging.getLogger(__name__)
EVAL_METRICS_NAME = "eval_metrics.json"
MODEL_CHOICES = ("auto", "trained", "base")
"""`auto`: the trained output in output_dir when there is one, else the base model."""


class EvaluationError(ValueError):
    """Nothing to evaluate: no eval split, or no trained model where one was asked for."""


@dataclass(frozen=True)
class ModelSource:
    """The weights evaluated: `kind` is `trained` (from output_dir) or `base`."""

    kind: str
    model: str
    """Folder or hub id of the (full) weights."""
    adapter: str | None = None
    """Folder of a LoRA adapter applied over `model`, if any."""

    def describe(self) -> str:
        if self.kind == "trained":
            return f"adapter trained in {self.adapter}, over {self.model}" if self.adapter \
                else f"trained model in {self.model}"
        return f"base model {self.model}" + (f" with the adapter in {self.adapter}" if self.adapter else "")


@dataclass
class EvaluationResult:
    source: ModelSource
    metrics: dict[str, Any]
    """Trainer-style names per split: `eval_loss`, `eval_perplexity`, `eval_rows`, `eval_tokens`,
    `eval_supervised_tokens`, `eval_runtime`, ... (and `train_*` with the train split)."""
    path: Path
    """The metrics file (`output_dir/eval_metrics.json`)."""


def resolve_model_source(cfg: AxolotlConfig, choice: str = "auto") -> ModelSource:
    """Which weights `evaluate` loads for `choice` (see `MODEL_CHOICES`); reads no weights."""
    if choice not in MODEL_CHOICES:
        raise EvaluationError(f"unknown model choice `{choice}`; use one of {', '.join(MODEL_CHOICES)}")
    output = Path(cfg.output_dir)
    if choice != "base":
        if cfg.adapter and is_adapter_dir(output):
            return ModelSource("trained", cfg.base_model, str(output))
        if not cfg.adapter and is_model_dir(output):
            return ModelSource("trained", str(output))
        if choice == "trained":
            what, files = ("adapter", "adapter_config.json") if cfg.adapter else ("model", "config.json + *.safetensors")
            raise EvaluationError(f"`output_dir` {output} holds no trained {what} (no {files}); run "
                                  "`axolotl train` first, or evaluate the base model")
    return ModelSource("base", cfg.base_model, cfg.lora_model_dir if cfg.adapter else None)


def check_eval_split_configured(cfg: AxolotlConfig) -> None:
    """Fail before any loading when the config defines no eval split."""
    if not cfg.val_set_size and not cfg.test_datasets:
        raise EvaluationError("the config has no eval split: set `val_set_size` (a fraction of the rows, "
                              "or a row count) or `test_datasets` (datasets kept for evaluation)")


def load_evaluated_model(cfg: AxolotlConfig, source: ModelSource,
                         tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """`source` loaded the way `train` loads its model (dtypes, attention, embeddings), in eval mode."""
    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model

    model_cfg = cfg.model_copy(deep=True)
    model_cfg.gradient_checkpointing = False
    if source.kind == "trained" and source.adapter is None:  # its config.json already has the overrides
        model_cfg.base_model, model_cfg.base_model_config = source.model, None
        model_cfg.revision_of_model, model_cfg.reinit_weights = None, False
    model = load_model(model_cfg, tokenizer)
    if source.adapter:
        model_cfg.lora_model_dir = source.adapter
        model = apply_adapter(model_cfg, model)
    model.eval()
    return model


def token_counts(dataset: Any) -> tuple[int, int]:
    """(tokens, supervised tokens) of prepared rows. Supervised tokens are the labels the loss
    scores: not -100 and not at a row's first position (the causal-LM loss shifts labels by one)."""
    import numpy as np

    from axolotl.data.pipeline import arrow_column
    from axolotl.data.strategies.base import IGNORE_INDEX

    labels = arrow_column(dataset, "labels").combine_chunks()
    flat = labels.flatten().to_numpy()
    lengths = labels.value_lengths().to_numpy()
    starts = np.cumsum(lengths) - lengths
    scored = int((flat != IGNORE_INDEX).sum()) - int((flat[starts[lengths > 0]] != IGNORE_INDEX).sum())
    return int(lengths.sum()), scored


def perplexity(loss: float) -> float:
    """exp(loss), infinite instead of an OverflowError for a diverged model."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def split_metrics(split: str, raw: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """The Trainer's metrics for one split, led by loss, perplexity and the counts."""
    loss = float(raw[f"{split}_loss"])
    tokens, supervised = token_counts(dataset)
    ours = {f"{split}_loss": loss, f"{split}_perplexity": perplexity(loss), f"{split}_rows": len(dataset),
            f"{split}_tokens": tokens, f"{split}_supervised_tokens": supervised}
    return {**ours, **{key: value for key, value in raw.items()
                       if key.startswith(f"{split}_") and key not in ours}}


def check_evaluation(cfg: AxolotlConfig, model: str = "auto") -> ModelSource:
    """Every refusal that needs no model or data (a launching process runs these before it starts the
    others, so a refused run fails once and fast); returns the model `evaluate` will load."""
    if cfg.reward_model or cfg.process_reward_model:
        from axolotl.training.support import NotSupportedYet

        raise NotSupportedYet("`axolotl evaluate` reports language-model loss and perplexity and is not supported "
                              "yet for reward models; their eval accuracy is logged during training (metrics.json)")
    if cfg.rl:
        from axolotl.training.support import NotSupportedYet

        raise NotSupportedYet(f"`axolotl evaluate` reports language-model loss and perplexity and is not supported "
                              f"yet for `rl: {cfg.rl}`; its eval metrics (eval_loss, eval_rewards/accuracies, ...) "
                              "are logged during training (metrics.json)")
    check_eval_split_configured(cfg)
    source = resolve_model_source(cfg, model)
    from axolotl.training.sft import preflight

    preflight(cfg)
    return source


def evaluate(cfg: AxolotlConfig, *, model: str = "auto", include_train: bool = False) -> EvaluationResult:
    """Evaluate as described in the module docstring; writes `output_dir/eval_metrics.json`."""
    from axolotl.training.distributed import check_ranks_agree

    check_ranks_agree(cfg)  # before any refusal, so no rank waits for one that already stopped
    source = check_evaluation(cfg, model)
    from transformers import set_seed

    from axolotl.data.pipeline import prepare_datasets_once_per_node
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.training.args import build_training_args
    from axolotl.training.sft import build_trainer

    tokenizer = load_tokenizer(cfg)
    prepared = prepare_datasets_once_per_node(cfg, tokenizer)
    if prepared.eval is None or len(prepared.eval) == 0:
        raise EvaluationError(f"the eval split is empty after preparing the data (in {prepared.path}); raise "
                              "`val_set_size` or check `test_datasets`")
    args = build_training_args(cfg, has_eval=True)
    args.report_to = []  # the result is the metrics file; trackers would open a run per evaluation
    set_seed(args.seed)
    LOG.info("evaluating the %s", source.describe())
    trainer = build_trainer(cfg, load_evaluated_model(cfg, source, tokenizer), tokenizer, prepared, args)
    splits = [("eval", prepared.eval)] + ([("train", prepared.train)] if include_train else [])
    metrics: dict[str, Any] = {}
    for split, dataset in splits:
        raw = trainer.evaluate(eval_dataset=dataset, metric_key_prefix=split)
        metrics.update(split_metrics(split, raw, dataset))
    path = Path(cfg.output_dir) / EVAL_METRICS_NAME
    if trainer.is_world_process_zero():
        report = {"model": {**asdict(source), "description": source.describe()},
                  "data": {"prepared_path": str(prepared.path), "sample_packing": bool(cfg.eval_sample_packing),
                           "splits": [split for split, _ in splits]},
                  "metrics": metrics}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    trainer.accelerator.wait_for_everyone()
    return EvaluationResult(source, metrics, path)
