"""The walk-free `train`/`zero_grad` and the Trainer overrides of `training/module_walks.py` do
exactly what the stock walks do."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from axolotl.testing import write_rows
from axolotl.testing.configs import load
from axolotl.training import module_walks
from axolotl.training.module_walks import install_cached_walks


def _lora_model(model_dir: Path, **lora: Any) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.1, **lora))


def test_train_and_eval_set_every_module_as_the_stock_walk_does(tiny_llama_dir: Path) -> None:
    model = _lora_model(tiny_llama_dir)
    assert install_cached_walks(model)
    modules = list(model.modules())
    assert model.eval() is model and not any(module.training for module in modules)
    modules[7].train()  # a submodule switched on its own: the next walk still reaches it
    assert model.train(False) is model and not any(module.training for module in modules)
    model.train()
    assert all(module.training for module in modules)
    with pytest.raises(ValueError, match="boolean"):
        model.train("yes")  # type: ignore[arg-type]
    frozen = copy.deepcopy(model)  # e.g. a frozen reference model taken later
    frozen.eval()
    assert all(module.training for module in modules), "the copy's eval() must not reach the original"
    assert not any(module.training for module in frozen.modules())


def test_zero_grad_clears_every_gradient_and_keeps_the_zeroing_mode(tiny_llama_dir: Path) -> None:
    model = _lora_model(tiny_llama_dir)
    assert install_cached_walks(model)
    ids = torch.randint(0, 100, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in trained)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_a_tree_with_its_own_train_keeps_the_stock_walk(tiny_llama_dir: Path) -> None:
    model = _lora_model(tiny_llama_dir, use_dora=True)  # DoRA layers override `train`
    assert not install_cached_walks(model)
    assert "train" not in vars(model) and "zero_grad" not in vars(model)


def test_the_flop_count_is_the_trainers(tiny_llama_dir: Path) -> None:
    from types import SimpleNamespace

    from transformers import Trainer

    from axolotl.training.module_walks import CachedModuleWalks

    holder = SimpleNamespace(model=_lora_model(tiny_llama_dir), _flop_parameters=None)
    inputs = {"input_ids": torch.ones(2, 9, dtype=torch.long)}
    expected = Trainer.floating_point_ops(holder, inputs)  # type: ignore[arg-type]
    assert expected > 0
    assert [CachedModuleWalks.floating_point_ops(holder, inputs) for _ in range(2)] == [expected] * 2  # type: ignore[arg-type]
    assert CachedModuleWalks.floating_point_ops(holder, {"labels": inputs["input_ids"]}) == 0  # type: ignore[arg-type]


def _cfg(model_dir: Path, tmp: Path, name: str) -> Any:
    write_rows([{"instruction": f"Say the word for {i}.", "input": "", "output": ("apple", "river")[i % 2]}
                for i in range(24)], tmp / "data", "jsonl")
    keys = {"base_model": str(model_dir), "learning_rate": 1e-3, "adapter": "lora", "lora_r": 4, "lora_alpha": 8,
            "lora_dropout": 0.3, "lora_target_linear": True, "datasets": [{"path": str(tmp / "data.jsonl"),
                                                                            "type": "alpaca"}],
            "dataset_prepared_path": str(tmp / "prepared"), "output_dir": str(tmp / name), "sequence_len": 128,
            "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1, "max_steps": 4,
            "micro_batch_size": 2, "val_set_size": 4, "eval_strategy": "steps", "eval_steps": 1,
            "max_grad_norm": 0.05, "logging_steps": 1, "seed": 7}
    return load(yaml.safe_dump(keys)).cfg


def test_training_with_the_cached_walks_matches_the_stock_walks(tiny_llama_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout (only active in training mode) after every evaluation and a gradient clip that
    bites: the same losses, gradient norms and eval losses either way."""
    from axolotl.training.sft import train

    installed: list[bool] = []
    original = module_walks.install_cached_walks

    def recording(model: Any) -> bool:
        installed.append(original(model))
        return installed[-1]

    monkeypatch.setattr(module_walks, "install_cached_walks", recording)
    cached = train(_cfg(tiny_llama_dir, tmp_path, "cached"))
    assert installed == [True]
    monkeypatch.setattr(module_walks, "install_cached_walks", lambda model: False)
    stock = train(_cfg(tiny_llama_dir, tmp_path, "stock"))

    def curve(result: Any) -> list[tuple[float, float]]:
        return [(entry["loss"], entry["grad_norm"]) for entry in result.metrics["train_loss_history"]]

    assert len(curve(cached)) == 4 and curve(cached) == curve(stock)
    evals = [entry["eval_loss"] for entry in cached.metrics["eval_history"]]
    assert len(evals) >= 4 and evals == [entry["eval_loss"] for entry in stock.metrics["eval_history"]]


def test_dpo_with_the_cached_walks_matches_the_stock_walks(tiny_llama_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The preference trainers use the same walks: with the adapter-off reference forward, an
    evaluation at every step and a gradient clip that bites, DPO gives the same losses, gradient
    norms and eval losses either way (TRL turns dropout off, so the mode switch is pinned by the
    SFT test above)."""
    import json

    from tests.training.test_preference_train import LORA, run_train, write_config

    installed: list[bool] = []
    original = module_walks.install_cached_walks

    def recording(model: Any) -> bool:
        installed.append(original(model))
        return installed[-1]

    curves = {}
    for name, install in (("cached", recording), ("stock", lambda model: False)):
        monkeypatch.setattr(module_walks, "install_cached_walks", install)
        (tmp_path / name).mkdir()
        config = write_config(tiny_llama_dir, tmp_path / name, "dpo", max_steps=3, eval_steps=1,
                              max_grad_norm=0.05, **LORA)
        assert run_train(config) == 0
        metrics = json.loads((tmp_path / name / "out" / "metrics.json").read_text())
        curves[name] = ([(entry["loss"], entry["grad_norm"]) for entry in metrics["train_loss_history"]],
                        [entry["eval_loss"] for entry in metrics["eval_history"]])
    assert installed == [True]
    assert len(curves["cached"][0]) == 3 and curves["cached"] == curves["stock"]
