"""Reward models on tiny CPU models: the Bradley-Terry loss against its formula, the process-reward
loss against accumulation splits, a toy ranking that must be learned, and `axolotl train` end to end.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from axolotl.testing import write_rows
from axolotl.testing.configs import load
from axolotl.testing.datasets import stepwise_rows
from axolotl.training.args import TrainingConfigError, build_training_args
from axolotl.training.reward import bradley_terry_loss, token_classification_loss
from axolotl.training.sft import preflight, train
from axolotl.training.support import NotSupportedYet

SGD_STEP = "max_steps: 1\noptimizer: sgd\nlr_scheduler: constant\nmax_grad_norm: 0\nweight_decay: 0\n"


def pairs(start: int, stop: int) -> list[dict[str, str]]:
    """Separable preferences: the chosen answer says `good`, the rejected one `bad`."""
    return [{"input": f"Rate item {i}.", "chosen": f"Item {i} is good.", "rejected": f"Item {i} is bad."}
            for i in range(start, stop)]


def rm_cfg(model_dir: Path, tmp: Path, name: str, extra: str = "", rows: list[dict[str, str]] | None = None) -> Any:
    data = write_rows(rows or pairs(0, 8), tmp / f"{name}-pairs", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3, "reward_model": True,
        "model_type": "AutoModelForSequenceClassification", "num_labels": 1,
        "datasets": [{"path": str(data), "type": "bradley_terry.chat_template"}],
        "dataset_prepared_path": str(tmp / f"prep-{name}"), "output_dir": str(tmp / name),
        "sequence_len": 128, "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1,
    }
    keys.update(yaml.safe_load(extra) or {})
    return load(yaml.safe_dump(keys)).cfg


def prm_cfg(model_dir: Path, tmp: Path, name: str, rows: list[dict[str, Any]], extra: str = "") -> Any:
    data = write_rows(rows, tmp / f"{name}-steps", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3, "process_reward_model": True,
        "datasets": [{"path": str(data), "type": "stepwise_supervised"}],
        "dataset_prepared_path": str(tmp / f"prep-{name}"), "output_dir": str(tmp / name),
        "sequence_len": 128, "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1,
    }
    keys.update(yaml.safe_load(extra) or {})
    return load(yaml.safe_dump(keys)).cfg


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def hand_bradley_terry(chosen: list[float], rejected: list[float], coefficient: float) -> float:
    pairwise = [-math.log(1.0 / (1.0 + math.exp(-(c - r)))) for c, r in zip(chosen, rejected, strict=True)]
    centre = [(c + r) ** 2 for c, r in zip(chosen, rejected, strict=True)]
    return sum(pairwise) / len(pairwise) + coefficient * sum(centre) / len(centre)


@pytest.mark.parametrize("coefficient", [0.0, 0.5])
def test_bradley_terry_formula(coefficient: float) -> None:
    chosen, rejected = [1.0, -0.5, 2.0], [0.2, 0.5, -1.0]
    ours = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected), coefficient)
    assert ours.item() == pytest.approx(hand_bradley_terry(chosen, rejected, coefficient), rel=1e-6)


@pytest.mark.parametrize("coefficient", [None, 0.5])
def test_reward_trainer_loss_is_the_bradley_terry_formula(tiny_llama_dir: Path, tmp_path: Path,
                                                          coefficient: float | None) -> None:
    """The trainer's loss on a batch of 3 pairs equals the hand formula on the model's own scores."""
    from axolotl.data.pipeline import prepare_datasets
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.training.sft import build_trainer

    extra = f"center_rewards_coefficient: {coefficient}\n" if coefficient is not None else ""
    rows = pairs(0, 3)
    rows[1]["rejected"] = "Item 1 is bad, really quite bad."  # so that the batch has right-padding
    cfg = rm_cfg(tiny_llama_dir, tmp_path, "loss", extra=extra, rows=rows)
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_datasets(cfg, tokenizer)
    args = build_training_args(cfg, has_eval=False)
    assert type(args).__name__ == "RewardConfig" and args.center_rewards_coefficient == coefficient
    model = load_model(cfg, tokenizer)
    trainer = build_trainer(cfg, model, tokenizer, prepared, args)
    batch = trainer.data_collator([prepared.train[i] for i in range(3)])
    model.eval()
    with torch.no_grad():
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].tolist()
        loss = trainer.compute_loss(model, dict(batch)).item()
    assert loss == pytest.approx(hand_bradley_terry(scores[:3], scores[3:], coefficient or 0.0), rel=1e-5)
    # the score is read at each side's last real token, so right-padding does not change it
    sequences = [prepared.train[i]["chosen_ids"] for i in range(3)] + [prepared.train[i]["rejected_ids"]
                                                                       for i in range(3)]
    shortest = min(range(6), key=lambda i: len(sequences[i]))
    assert len(sequences[shortest]) < batch["input_ids"].shape[1]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([sequences[shortest]])).logits[0, 0].item()
    assert alone == pytest.approx(scores[shortest], abs=1e-5)


def test_token_classification_loss_by_hand() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    nll = [-math.log(math.exp(1.0) / (1.0 + math.exp(1.0))), math.log(2.0)]
    assert token_classification_loss({"logits": logits}, labels).item() == pytest.approx(sum(nll) / 2, rel=1e-6)
    summed = token_classification_loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(8))
    assert summed.item() == pytest.approx(sum(nll) / 8, rel=1e-6), "normalised by the window's labelled tokens"


def test_prm_accumulation_split_is_one_batch(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """4x1 and 1x4 give the same first loss and parameters (SGD). The rows have 1..4 labelled steps,
    so a per-micro-batch mean (transformers' token-classification loss under accumulation) fails it."""
    rows = [{"prompt": f"Count to {n}.", "completions": [f"{k}." for k in range(1, n + 1)],
             "labels": [k % 2 == 0 for k in range(n)]} for n in (1, 2, 3, 4)]
    big = prm_cfg(tiny_llama_dir, tmp_path, "mb4", rows, SGD_STEP + "micro_batch_size: 4\n")
    small = prm_cfg(tiny_llama_dir, tmp_path, "ga4", rows, SGD_STEP + "micro_batch_size: 1\n"
                    "gradient_accumulation_steps: 4\n")
    first_big, first_small = train(big).losses[0], train(small).losses[0]
    assert first_small == pytest.approx(first_big, rel=1e-5)
    assert 0.5 < first_big < 1.0, "about ln 2 for a fresh two-class head"
    from safetensors.torch import load_file

    a = load_file(str(Path(big.output_dir) / "model.safetensors"))
    b = load_file(str(Path(small.output_dir) / "model.safetensors"))
    assert set(a) == set(b) and "score.weight" in a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-6, rtol=0, msg=name)


# --------------------------------------------------------------------------------------------
# learning: a toy preference the reward model must rank on held-out pairs
# --------------------------------------------------------------------------------------------


def test_reward_model_ranks_held_out_pairs(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    held_out = write_rows(pairs(100, 132), tmp_path / "held-out", "jsonl")
    cfg = rm_cfg(tiny_llama_dir, tmp_path, "ranker", rows=pairs(0, 64), extra=(
        "micro_batch_size: 8\nnum_epochs: 5\nlearning_rate: 0.003\nlr_scheduler: constant\n"
        "eval_strategy: epoch\nlogging_steps: 8\nseed: 7\n"
        f"test_datasets:\n  - path: {held_out}\n    type: bradley_terry.chat_template\n"))
    result = train(cfg)
    final_eval = result.metrics["eval_history"][-1]
    assert final_eval["eval_accuracy"] > 0.9, result.metrics["eval_history"]
    # the saved model, loaded with plain transformers, ranks the held-out pairs the same way
    model = AutoModelForSequenceClassification.from_pretrained(cfg.output_dir).eval()
    assert model.config.num_labels == 1
    from axolotl.data.pipeline import prepare_datasets
    from axolotl.models.tokenizer import load_tokenizer

    evaluation = prepare_datasets(cfg, load_tokenizer(cfg)).eval
    assert len(evaluation) == 32
    with torch.no_grad():
        wins = sum(model(input_ids=torch.tensor([row["chosen_ids"]])).logits.item()
                   > model(input_ids=torch.tensor([row["rejected_ids"]])).logits.item() for row in evaluation)
    assert wins / len(evaluation) > 0.9
    assert result.losses[-1] < result.losses[0] < 0.8, "starts near ln 2 and falls"


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "message"), [
    ("model_type: AutoModelForCausalLM\n", "set `model_type: AutoModelForSequenceClassification`"),
    ("num_labels: 2\n", "needs `num_labels: 1`"),
])
def test_reward_head_must_match(tiny_llama_dir: Path, tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        preflight(rm_cfg(tiny_llama_dir, tmp_path, "head", extra=extra))


@pytest.mark.parametrize("extra", ["sample_packing: true\n", "chunked_cross_entropy: true\n"])
def test_reward_refusals(tiny_llama_dir: Path, tmp_path: Path, extra: str) -> None:
    with pytest.raises(NotSupportedYet, match=f"`{extra.split(':')[0]}` is not supported yet with `reward_model`"):
        preflight(rm_cfg(tiny_llama_dir, tmp_path, "refused", extra=extra))


@pytest.mark.parametrize("kind", ["reward_model", "process_reward_model"])
def test_unset_head_takes_the_methods_default_and_lora_trains_it(tiny_llama_dir: Path, tmp_path: Path,
                                                                 kind: str) -> None:
    from axolotl.models.adapters import apply_adapter, lora_config
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    lora = "adapter: lora\nlora_target_linear: true\n"
    if kind == "reward_model":
        cfg = rm_cfg(tiny_llama_dir, tmp_path, "defaults", extra=lora + "model_type: null\nnum_labels: null\n")
        expected = ("LlamaForSequenceClassification", 1, "SEQ_CLS")
    else:
        cfg = prm_cfg(tiny_llama_dir, tmp_path, "defaults", stepwise_rows(2), lora)
        expected = ("LlamaForTokenClassification", 2, "TOKEN_CLS")
    model = load_model(cfg, load_tokenizer(cfg))
    assert (type(model).__name__, model.config.num_labels, lora_config(cfg, model).task_type) == expected
    trainable = [name for name, p in apply_adapter(cfg, model).named_parameters() if p.requires_grad]
    assert any("score" in name for name in trainable), "the new head is trained in full, not left random"


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    script = Path(sys.executable).parent / "axolotl"
    return subprocess.run([str(script), *args], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


COMMON = "learning_rate: 1e-3\nsequence_len: 128\nmax_steps: 2\nmicro_batch_size: 2\noptimizer: adamw_torch\n" \
         "dataset_num_proc: 1\nval_set_size: 4\neval_strategy: steps\neval_steps: 2\nsave_strategy: \"no\"\n"


@pytest.mark.parametrize("kind", ["reward_model", "process_reward_model"])
def test_cli_train(tiny_qwen2_dir: Path, tmp_path: Path, kind: str) -> None:
    if kind == "reward_model":
        data = write_rows(pairs(0, 12), tmp_path / "pairs", "jsonl")
        head = "reward_model: true\nmodel_type: AutoModelForSequenceClassification\nnum_labels: 1\n" \
               "center_rewards_coefficient: 0.01\n"
        entry = f"  - path: {data}\n    type: bradley_terry.chat_template\n"
    else:
        data = write_rows(stepwise_rows(12), tmp_path / "steps", "jsonl")
        head = "process_reward_model: true\nmodel_type: AutoModelForTokenClassification\nnum_labels: 2\n"
        entry = f"  - path: {data}\n    type: stepwise_supervised\n    train_on_last_step_only: false\n"
    path = tmp_path / "cfg.yml"
    path.write_text(f"base_model: {tiny_qwen2_dir}\n{head}{COMMON}dataset_prepared_path: {tmp_path / 'prep'}\n"
                    f"output_dir: {tmp_path / 'out'}\ndatasets:\n{entry}")
    result = _cli(["train", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    for name in ("model.safetensors", "tokenizer.json", "axolotl_config.yml", "metrics.json"):
        assert (out / name).is_file(), name
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)  # num_labels 2 is the default and is not written out
    expected = ("Qwen2ForSequenceClassification", 1) if kind == "reward_model" else ("Qwen2ForTokenClassification", 2)
    assert (config.architectures[0], config.num_labels) == expected
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_loss_history"]) == 2 and 0.0 <= metrics["eval_history"][-1]["eval_accuracy"] <= 1.0
    if kind == "reward_model":
        assert "accuracy" in metrics["train_loss_history"][0] and "margin" in metrics["train_loss_history"][0]


def test_evaluate_command_refuses_reward_models(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.training.evaluate import evaluate

    with pytest.raises(NotSupportedYet, match="`axolotl evaluate` .* not supported yet for reward models"):
        evaluate(rm_cfg(tiny_llama_dir, tmp_path, "evaluate", extra="val_set_size: 2\n"))


def test_prm_packed_first_loss_equals_padded(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """8 rows padded in one batch vs packed into one row (sdpa): same first loss (rtol 1e-5)."""
    common = "max_steps: 1\nsdp_attention: true\n"
    rows = stepwise_rows(8)
    padded = prm_cfg(tiny_llama_dir, tmp_path, "padded", rows, common + "micro_batch_size: 8\n")
    packed = prm_cfg(tiny_llama_dir, tmp_path, "packed", rows, common + "micro_batch_size: 1\nsample_packing: true\n"
                     "sequence_len: 1024\n")
    assert train(packed).losses[0] == pytest.approx(train(padded).losses[0], rel=1e-5)
