"""Preference training end to end on tiny CPU models, through `axolotl train`'s code path
(`axolotl.cli.train.run`: config file -> validation -> refusals -> data -> TRL trainer -> outputs).

Pinned: DPO learns a separable preference (held-out reward accuracy from 0 to > 0.9); every method
trains, logs its metrics to the console line and metrics.json, and saves a model that loads back;
`max_prompt_len` reaches the trainer; refused settings stop before anything loads.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing import write_rows


def sky_pairs(n: int) -> list[dict[str, str]]:
    """Separable: the chosen answer is always blue, the rejected one green; prompts differ."""
    return [{"prompt": f"Question {i}: what colour is the sky on a clear day?" + " Please answer." * (i % 3),
             "chosen": " The sky is blue.", "rejected": " The sky is green."} for i in range(n)]


def sky_labels(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"Question {i}: what colour is the sky on a clear day?",
             "completion": " The sky is blue." if i % 2 == 0 else " The sky is green.", "label": i % 2 == 0}
            for i in range(n)]


def sky_conversations(n: int) -> list[dict[str, Any]]:
    return [{side: [{"role": "user", "content": f"Question {i}: what colour is the sky?"},
                    {"role": "assistant", "content": colour}]
             for side, colour in (("chosen", "Blue."), ("rejected", "Green."))} for i in range(n)]


DATA = {"dpo": (sky_pairs, "chatml.prompt_pairs"), "kto": (sky_labels, "chatml.prompt_pairs"),
        "orpo": (sky_conversations, "chat_template.argilla"), "simpo": (sky_pairs, "chatml.prompt_pairs")}
LORA = {"adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True}


def write_config(model_dir: Path, tmp: Path, rl: str, **extra: Any) -> Path:
    rows, dataset_type = DATA[rl]
    data = write_rows(rows(40), tmp / "prefs", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "rl": rl, "learning_rate": 5e-3, "lr_scheduler": "constant",
        "datasets": [{"path": str(data), "type": dataset_type}], "val_set_size": 8,
        "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"), "sequence_len": 64,
        "micro_batch_size": 4, "max_steps": 6, "optimizer": "adamw_torch", "save_strategy": "no",
        "dataset_num_proc": 1, "eval_strategy": "steps", "eval_steps": 6, "seed": 7,
        **({"chat_template": "chatml"} if rl == "orpo" else {}),
    }
    keys.update(extra)
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(keys))
    return path


def run_train(config: Path) -> int:
    from axolotl.cli.train import run

    return run(str(config))


def test_dpo_learns_a_separable_preference(tiny_llama_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """LoRA with reentrant gradient checkpointing (as the reference's KTO example): the reference forward
    runs with checkpointing paused and the adapter off, and the adapter still receives gradients."""
    config = write_config(tiny_llama_dir, tmp_path, "dpo", max_steps=8, eval_steps=8, eval_on_start=True,
                          gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True}, **LORA)
    assert run_train(config) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    start, end = metrics["eval_history"][0], metrics["eval_history"][-1]
    assert start["step"] == 0 and end["step"] == 8
    # at step 0 the adapter is the identity, so every reward is 0 and no held-out pair is ranked right
    assert start["eval_rewards/accuracies"] == 0.0 and start["eval_rewards/margins"] == 0.0
    assert end["eval_rewards/accuracies"] > 0.9 and end["eval_rewards/margins"] > 0.2
    assert end["eval_loss"] < start["eval_loss"] - 0.05
    train_logs = metrics["train_loss_history"]
    assert len(train_logs) == 8
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert all(key in entry for entry in train_logs), key
    assert train_logs[-1]["rewards/accuracies"] > 0.9
    assert metrics["num_input_tokens_seen"] > 0 and metrics["tokens_per_second"] > 0
    # the console line carries the preference metrics (and not TRL's duplicate token count)
    console = capsys.readouterr().err
    line = next(text for text in console.splitlines() if text.startswith("step 8/8"))
    assert "rewards/accuracies" in line and "rewards/margins" in line and "num_tokens" not in line
    # one adapter was trained and saved: TRL's reference copy of it is gone
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    assert (out / "axolotl_config.yml").is_file() and (out / "training_curves.png").is_file()


@pytest.mark.parametrize(("rl", "extra", "keys"), [
    pytest.param("dpo", {"rl_beta": 0.2, "dpo_loss_type": ["sigmoid", "sft"], "dpo_loss_weights": [1.0, 0.5]},
                 ("rewards/margins", "rewards/accuracies"), id="dpo-full-finetune-rpo-mix"),
    pytest.param("kto", {"kto_undesirable_weight": 1.2, "remove_unused_columns": False},
                 ("kl", "rewards/chosen", "rewards/rejected"), id="kto"),
    pytest.param("orpo", {"orpo_alpha": 0.2}, ("nll_loss", "log_odds_ratio", "rewards/accuracies"), id="orpo"),
    pytest.param("simpo", {"rl_beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0},
                 ("rewards/margins", "rewards/accuracies"), id="simpo"),
])
def test_each_method_trains_and_saves(rl: str, extra: dict[str, Any], keys: tuple[str, ...], tiny_llama_dir: Path,
                                      tmp_path: Path) -> None:
    """Full fine-tunes: the saved model loads back and differs from the base."""
    import torch
    from transformers import AutoModelForCausalLM

    assert run_train(write_config(tiny_llama_dir, tmp_path, rl, **extra)) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["train_loss_history"]) == 6
    for key in keys:  # KTO logs a class's rewards only for the intervals whose batches held that class
        assert any(key in entry for entry in metrics["train_loss_history"]), key
        assert f"eval_{key}" in metrics["eval_history"][-1], key
    assert metrics["num_input_tokens_seen"] > 0, "tokens are counted for every trainer's batch layout"
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert len(changed) == len(list(base.parameters())), "every parameter trained"


def test_refused_setting_stops_before_loading(tiny_llama_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from axolotl.cli.train import EXIT_NOT_SUPPORTED

    config = write_config(tiny_llama_dir, tmp_path, "dpo", dpo_padding_free=True, sample_packing=True)
    assert run_train(config) == EXIT_NOT_SUPPORTED
    err = capsys.readouterr().err
    assert "`sample_packing` is not supported yet with `rl: dpo`" in err
    assert "`dpo_padding_free` is not supported yet with `rl: dpo`" in err
    assert not (tmp_path / "prepared").exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# max_prompt_len
# --------------------------------------------------------------------------------------------

def test_truncate_prompts_keeps_the_end(tiny_tokenizer_dir: Path) -> None:
    import datasets
    from transformers import AutoTokenizer

    from axolotl.training.preference import truncate_prompts

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    long = "Some background sentence that goes on. " * 6 + "What colour is the sky?"
    rows = datasets.Dataset.from_list([{"prompt": long, "chosen": " Blue."}, {"prompt": "Hi?", "chosen": " Yo."}])
    cut = truncate_prompts(rows, tokenizer, 10)
    assert cut[1]["prompt"] == "Hi?" and cut["chosen"] == rows["chosen"]
    kept = cut[0]["prompt"]
    assert long.endswith(kept) and kept.endswith("What colour is the sky?")
    assert len(tokenizer(kept)["input_ids"]) <= 10 < len(tokenizer(long)["input_ids"])
    assert len(tokenizer(kept, add_special_tokens=False)["input_ids"]) == 9, "BOS + 9 text tokens"
    assert truncate_prompts(rows, tokenizer, None) is rows


def test_max_prompt_len_reaches_the_trainer(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import datasets

    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.testing.configs import load
    from axolotl.training.preference import build_preference_trainer, truncate_prompts
    from axolotl.training.preference_args import build_preference_args

    cfg = load(write_config(tiny_llama_dir, tmp_path, "dpo", max_prompt_len=8, eval_strategy="no",
                                  val_set_size=0).read_text()).cfg
    tokenizer = load_tokenizer(cfg)
    rows = truncate_prompts(datasets.Dataset.from_list(sky_pairs(8)), tokenizer, cfg.max_prompt_len)
    trainer = build_preference_trainer(cfg, load_model(cfg, tokenizer), tokenizer, rows, None,
                                       build_preference_args(cfg, has_eval=False))
    lengths = [len(ids) for ids in trainer.train_dataset["prompt_ids"]]
    assert max(lengths) <= 8 and min(lengths) >= 7
    assert all(ids[0] == tokenizer.bos_token_id for ids in trainer.train_dataset["prompt_ids"])
    assert all(row["chosen_ids"][-1] == tokenizer.eos_token_id for row in trainer.train_dataset)


def test_parameter_groups_and_our_schedules_apply(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """LoRA+ and `lr_scheduler: rex` (built by `OptimizationMixin`, as for SFT) reach the TRL trainer."""
    import datasets

    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.testing.configs import load
    from axolotl.training.preference import build_preference_trainer
    from axolotl.training.preference_args import build_preference_args

    text = write_config(tiny_llama_dir, tmp_path, "dpo", eval_strategy="no", val_set_size=0, lr_scheduler="rex",
                        loraplus_lr_ratio=4, learning_rate=1e-3, **LORA).read_text()
    cfg = load(text).cfg
    tokenizer = load_tokenizer(cfg)
    trainer = build_preference_trainer(cfg, apply_adapter(cfg, load_model(cfg, tokenizer)), tokenizer,
                                       datasets.Dataset.from_list(sky_pairs(8)), None,
                                       build_preference_args(cfg, has_eval=False))
    optimizer = trainer.create_optimizer()
    assert sorted({group["lr"] for group in optimizer.param_groups}) == pytest.approx([1e-3, 4e-3])
    schedule = trainer.create_scheduler(10, optimizer)
    assert [round(f(5), 4) for f in schedule.lr_lambdas][0] < 1.0, "rex decays; transformers' constant would not"


def test_compiled_layers_train_like_eager(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`torch_compile` compiles the policy's decoder layers (the adapter-off reference forward runs through
    the same compiled layers); `aot_eager` needs no C++ compiler."""
    losses = {}
    for name, extra in (("eager", {}), ("compiled", {"torch_compile": True, "torch_compile_backend": "aot_eager"})):
        (tmp_path / name).mkdir()
        config = write_config(tiny_llama_dir, tmp_path / name, "dpo", max_steps=3, eval_strategy="no",
                              val_set_size=0, **LORA, **extra)
        assert run_train(config) == 0
        history = json.loads((tmp_path / name / "out" / "metrics.json").read_text())["train_loss_history"]
        losses[name] = [entry["loss"] for entry in history]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
    assert losses["eager"][-1] < losses["eager"][0]


def test_evaluate_refuses_preference_configs(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.testing.configs import load
    from axolotl.training.evaluate import evaluate
    from axolotl.training.support import NotSupportedYet

    cfg = load(write_config(tiny_llama_dir, tmp_path, "kto").read_text()).cfg
    with pytest.raises(NotSupportedYet, match="not supported yet for `rl: kto`"):
        evaluate(cfg)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes")
def test_qlora_dpo_trains(tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = write_config(tiny_llama_dir, tmp_path, "dpo", max_steps=3, eval_strategy="no", val_set_size=0,
                          adapter="qlora", load_in_4bit=True, lora_r=8, lora_alpha=16, lora_target_linear=True)
    assert run_train(config) == 0
    losses = [e["loss"] for e in json.loads((tmp_path / "out" / "metrics.json").read_text())["train_loss_history"]]
    assert losses[0] == pytest.approx(0.6931, abs=1e-4) and losses[-1] < losses[0]
