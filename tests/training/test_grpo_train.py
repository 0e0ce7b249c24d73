"""GRPO end to end on a tiny CPU model, through `axolotl train`'s code path (`axolotl.cli.train.run`:
config file -> validation -> refusals -> prompts -> reward functions -> TRL's GRPOTrainer -> outputs).

Pinned: the reward rises on a toy task ("use the letter e": the share of `e` in the completion, a
signal every random completion has some of); reward-function failures stop the run with the
function named; zero-advantage micro-batches are skipped and change nothing; LoRA with a KL term
trains one adapter against the base; a reward model path scores completions.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import write_rows

REWARDS = '''
def share_of_letter(completions, letter, **kwargs):
    """The dataset's `letter` column reaches the reward as a keyword argument."""
    texts = [c[0]["content"] for c in completions]
    return [t.count(l) / max(len(t), 1) for t, l in zip(texts, letter)]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def broken(completions, **kwargs):
    return [1 / 0 for _ in completions]


def one_short(completions, **kwargs):
    return [0.0] * (len(completions) - 1)


def to_prompt(cfg, *args, **kwargs):
    def fn(row, tokenizer=None):
        return {"prompt": [{"role": "user", "content": row["question"]}], "letter": "e"}
    return fn, {"remove_columns": ["question"]}
'''
LORA = {"adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True}


def write_config(model_dir: Path, tmp: Path, reward: str = "share_of_letter", trl: dict[str, Any] | None = None,
                 **extra: Any) -> Path:
    module = f"grpo_rewards_{tmp.name}"
    (tmp / f"{module}.py").write_text(REWARDS)
    data = write_rows([{"question": f"Question {i}: say something."} for i in range(64)], tmp / "prompts", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "rl": "grpo", "learning_rate": 0.03, "lr_scheduler": "constant",
        "optimizer": "adamw_torch", "micro_batch_size": 8, "max_steps": 40, "seed": 1, "save_strategy": "no",
        "datasets": [{"path": str(data), "type": f"{module}.to_prompt"}], "dataset_num_proc": 1,
        "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"),
        "trl": {"num_generations": 8, "max_completion_length": 12, "temperature": 1.0,
                "reward_funcs": [reward if "/" in reward else f"{module}.{reward}"], **(trl or {})},
    }
    keys.update(extra)
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(keys))
    return path


def run_train(config: Path) -> int:
    from axolotl.cli.train import run

    return run(str(config))


def history(tmp: Path) -> list[dict[str, Any]]:
    return json.loads((tmp / "out" / "metrics.json").read_text())["train_loss_history"]


def test_reward_rises_on_a_toy_task(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Measured on CPU: the mean reward of the first 5 steps is ~0.08, of the last 5 ~0.67 (seed 1; seeds
    2-5 end at 0.28-0.67, so the margin asked for is 0.15)."""
    monkeypatch.chdir(tmp_path)
    assert run_train(write_config(tiny_llama_dir, tmp_path)) == 0
    logs = history(tmp_path)
    assert len(logs) == 40
    module = f"grpo_rewards_{tmp_path.name}"
    rewards = [entry["rewards/share_of_letter/mean"] for entry in logs]
    assert statistics.fmean(rewards[-5:]) > statistics.fmean(rewards[:5]) + 0.15, rewards
    assert [entry["reward"] for entry in logs] == rewards  # one function, weight 1
    for key in ("rewards/share_of_letter/std", "reward_std", "frac_reward_zero_std", "entropy",
                "completions/mean_length", "completions/clipped_ratio", "clip_ratio/region_mean", "grad_norm",
                "skipped_zero_adv_batches"):
        assert all(key in entry for entry in logs), key
    assert all(entry["completions/max_length"] <= 12 for entry in logs)
    assert logs[-1]["entropy"] < logs[0]["entropy"]  # the policy sharpened
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_input_tokens_seen"] > 40 * 8 * 12  # TRL's count: prompt + completion tokens
    console = capsys.readouterr().err
    line = next(text for text in console.splitlines() if text.startswith("step 40/40"))
    assert "rewards/share_of_letter/mean" in line and "entropy" in line and "tok/s" in line
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and (out / "axolotl_config.yml").is_file()
    assert module in (out / "axolotl_config.yml").read_text()


@pytest.mark.parametrize(("reward", "message"), [
    ("broken", ("reward function `{module}.broken` raised ZeroDivisionError: division by zero at step 0 on a "
                "batch of 8 completions")),
    ("one_short", "reward function `{module}.one_short` returned 7 rewards at step 0 on a batch of 8 completions"),
])
def test_reward_function_failures_stop_the_run_naming_it(reward: str, message: str, tiny_llama_dir: Path,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_train(write_config(tiny_llama_dir, tmp_path, reward, max_steps=2)) == 1
    error = capsys.readouterr().err
    assert message.format(module=f"grpo_rewards_{tmp_path.name}") in error
    assert "Traceback" not in error and not (tmp_path / "out" / "model.safetensors").exists()


def test_zero_advantage_batches_are_skipped_and_change_nothing(tiny_llama_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every completion earns the same reward: each micro-batch (2 per step) is skipped, the logs say so,
    and the weights equal those of the run that computes the (zero) loss and gradient."""
    import torch
    from safetensors.torch import load_file

    weights = {}
    for skip in (True, False):
        run_dir = tmp_path / f"skip_{skip}"
        run_dir.mkdir()
        monkeypatch.chdir(run_dir)
        config = write_config(tiny_llama_dir, run_dir, "constant", max_steps=3, micro_batch_size=4,
                              gradient_accumulation_steps=2,
                              trl={"skip_zero_advantage_batches": skip, "num_generations": 4})
        assert run_train(config) == 0
        logs = history(run_dir)
        assert [entry["loss"] for entry in logs] == [0.0] * 3
        assert all(entry["frac_reward_zero_std"] == 1.0 for entry in logs)
        if skip:
            assert [entry["skipped_zero_adv_batches"] for entry in logs] == [2, 2, 2]
            assert all(entry["grad_norm"] == 0.0 for entry in logs)
        else:
            assert "skipped_zero_adv_batches" not in logs[0]
        weights[skip] = load_file(str(run_dir / "out" / "model.safetensors"))
    base = load_file(str(tiny_llama_dir / "model.safetensors"))
    for name, tensor in weights[True].items():
        assert torch.equal(tensor, weights[False][name]) and torch.equal(tensor, base[name]), name


def test_lora_with_a_kl_term_trains_one_adapter_against_the_base(tiny_llama_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = write_config(tiny_llama_dir, tmp_path, trl={"beta": 0.1, "loss_type": "grpo"}, max_steps=3,
                          learning_rate=0.01, **LORA)
    assert run_train(config) == 0
    logs = history(tmp_path)
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # step 0: adapter B = 0, the policy is the base
    assert logs[-1]["kl"] > 0.0
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8


def test_a_reward_model_path_scores_completions(tiny_llama_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    scorer = tmp_path / "scorer"
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(tiny_llama_dir, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(scorer)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(scorer)
    monkeypatch.chdir(tmp_path)
    assert run_train(write_config(tiny_llama_dir, tmp_path, str(scorer), max_steps=2)) == 0
    logs = history(tmp_path)
    assert all(entry["rewards/scorer/std"] > 0 for entry in logs)  # the classifier's scores differ per completion
