"""`train(cfg)` end to end on tiny CPU models: learning, outputs that load back, and invariants.

Invariants pinned (TRL-style, with tolerances stated at each test):
* accumulation split: `micro_batch_size 4 x accumulation 1` == `1 x 4` == one hand-computed SGD
  step on the loss averaged over every supervised token of the effective batch;
* packing: the packed first-step loss equals the unpacked one (sdpa, document starts masked);
* resume: a run resumed from a checkpoint logs the uninterrupted run's next losses.
"""

from __future__ import annotations

import importlib.util
import json
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
from axolotl.training.sft import TrainingError, train
from axolotl.training.support import NotSupportedYet

WORDS = ("apple", "river", "stone", "cloud")


def toy_rows(n: int) -> list[dict[str, str]]:
    """A fixed mapping number -> word with prompts of different lengths: learnable in a few steps."""
    return [{"instruction": f"Say the word for {i}." + " Please." * (i % 3), "input": "",
             "output": WORDS[i % len(WORDS)]} for i in range(n)]


def make_cfg(model_dir: Path, tmp: Path, name: str, rows: int = 32, extra: str = "") -> Any:
    """A small SFT config; keys in `extra` (YAML) replace the defaults."""
    data = tmp / "data.jsonl"
    if not data.exists():
        write_rows(toy_rows(rows), tmp / "data", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3,
        "datasets": [{"path": str(data), "type": "alpaca"}],
        "dataset_prepared_path": str(tmp / f"prep-{name}"), "output_dir": str(tmp / name),
        "sequence_len": 256, "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1,
    }
    keys.update(yaml.safe_load(extra) or {})
    return load(yaml.safe_dump(keys)).cfg


def state_dict(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


# --------------------------------------------------------------------------------------------
# learning and artifacts
# --------------------------------------------------------------------------------------------

def test_full_finetune_learns_and_outputs_load(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_cfg(tiny_llama_dir, tmp_path, "full", extra="micro_batch_size: 4\nmax_steps: 40\n"
                   "lr_scheduler: constant\n")
    result = train(cfg)
    losses = result.losses
    assert len(losses) == 40
    # Every 10-step window averages lower than the one before (steady learning, not one lucky
    # batch), and the last window is under half the first step's loss (random init ~ ln(vocab)).
    windows = [sum(losses[i:i + 10]) / 10 for i in range(0, 40, 10)]
    assert windows == sorted(windows, reverse=True) and len(set(windows)) == 4, windows
    assert windows[-1] < losses[0] / 2, losses
    out = Path(cfg.output_dir)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "axolotl_config.yml", "metrics.json"):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(f".{out.name}.*")), "staging folders must not be left behind"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["loss"] for e in metrics["train_loss_history"]] == pytest.approx(losses)
    assert metrics["tokens_per_second"] > 0 and metrics["final"]["train_runtime"] > 0
    assert load(str((out / "axolotl_config.yml").read_text())).cfg.max_steps == 40
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, base.get_parameter(n))]
    assert len(changed) == len(list(model.parameters())), "every parameter must have trained"
    ids = tokenizer("Say the word for 5.", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > ids["input_ids"].shape[1]


def test_lora_saves_an_adapter_that_loads(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_cfg(tiny_qwen2_dir, tmp_path, "lora", rows=8,
                   extra="adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\nmax_steps: 3\n")
    result = train(cfg)
    out = Path(cfg.output_dir)
    assert len(result.losses) == 3
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists(), "a LoRA run saves the adapter, not the base weights"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir), out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Say the word for 1.", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="QLoRA needs bitsandbytes (the `qlora` extra; >= 0.49 runs 4-bit on CPU)")
def test_qlora_trains_on_a_4bit_base_and_the_adapter_loads(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`adapter: qlora` + `load_in_4bit` through `train`: the base really is 4-bit, the loss falls on the
    toy set, and the adapter loads back over the unquantised base and generates."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_cfg(tiny_llama_dir, tmp_path, "qlora", rows=16,
                   extra="adapter: qlora\nload_in_4bit: true\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
                         "learning_rate: 0.01\nmicro_batch_size: 4\nmax_steps: 12\nlogging_steps: 1\n")
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    assert getattr(load_model(cfg, load_tokenizer(cfg)), "is_loaded_in_4bit", False)
    result = train(cfg)
    assert sum(result.losses[-3:]) / 3 < sum(result.losses[:3]) / 3, result.losses
    out = Path(cfg.output_dir)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), out)
    ids = AutoTokenizer.from_pretrained(out)("Say the word for 1.", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]


# --------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------

SGD_STEP = "max_steps: 1\noptimizer: sgd\nlr_scheduler: constant\nmax_grad_norm: 0\nweight_decay: 0\n"


def _manual_sgd_step(model_dir: Path, cfg: Any, lr: float) -> dict[str, torch.Tensor]:
    """Parameters after one SGD step on the sum of token losses / supervised tokens of all rows."""
    from transformers import AutoModelForCausalLM

    from axolotl.data.pipeline import prepare_datasets
    from axolotl.models.tokenizer import load_tokenizer

    rows = prepare_datasets(cfg, load_tokenizer(cfg)).train
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    total, tokens = torch.zeros(()), 0
    for row in rows:
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        logits = model(input_ids=ids).logits[0, :-1]
        target = labels[0, 1:]
        total = total + torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=-100, reduction="sum")
        tokens += int((target != -100).sum())
    (total / tokens).backward()
    with torch.no_grad():
        return {n: (p - lr * p.grad).detach() for n, p in model.named_parameters()}


def test_accumulation_split_is_one_batch(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """4x1 and 1x4 give the same parameters as a hand-computed step (atol 2e-6 on weights ~0.02).

    SGD (not Adam) so the update is proportional to the gradient: a per-micro-batch mean (the
    classic accumulation bug) changes the update by the ratio of token counts and fails this.
    """
    big = make_cfg(tiny_llama_dir, tmp_path, "mb4", rows=4, extra=SGD_STEP + "micro_batch_size: 4\n")
    small = make_cfg(tiny_llama_dir, tmp_path, "ga4", rows=4,
                     extra=SGD_STEP + "micro_batch_size: 1\ngradient_accumulation_steps: 4\n")
    train(big)
    train(small)
    a, b = state_dict(Path(big.output_dir)), state_dict(Path(small.output_dir))
    expected = _manual_sgd_step(tiny_llama_dir, big, 1e-3)
    for name, tensor in expected.items():
        torch.testing.assert_close(a[name], tensor, atol=2e-6, rtol=0, msg=f"mb4 vs manual: {name}")
        torch.testing.assert_close(b[name], tensor, atol=2e-6, rtol=0, msg=f"ga4 vs manual: {name}")


def test_packed_first_loss_equals_unpacked(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """One packed row of all 6 documents vs a padded batch of 6 rows: same first loss (rtol 1e-5)."""
    common = "max_steps: 1\nsdp_attention: true\ntrain_on_inputs: true\n"  # documents start with trained labels
    padded = make_cfg(tiny_llama_dir, tmp_path, "padded", rows=6, extra=common + "micro_batch_size: 6\n")
    packed = make_cfg(tiny_llama_dir, tmp_path, "packed", rows=6,
                      extra=common + "micro_batch_size: 1\nsample_packing: true\n"
                      "sample_packing_mask_document_starts: true\nsequence_len: 1024\n")
    first_padded = train(padded).losses[0]
    first_packed = train(packed).losses[0]
    assert first_packed == pytest.approx(first_padded, rel=1e-5)
    torch.testing.assert_close(state_dict(Path(packed.output_dir))["model.norm.weight"],
                               state_dict(Path(padded.output_dir))["model.norm.weight"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_resume_reproduces_the_uninterrupted_run(tiny_llama_dir: Path, tmp_path: Path, packing: bool) -> None:
    """Steps 4-6 after resuming from checkpoint-3 log the same losses (rtol 1e-5); 6 steps cross
    an epoch boundary, so the next epoch's shuffle is covered too."""
    extra = ("micro_batch_size: 4\nmax_steps: 6\nsave_strategy: steps\nsave_steps: 3\n"
             + ("sample_packing: true\nsequence_len: 256\n" if packing else ""))
    whole = make_cfg(tiny_llama_dir, tmp_path, "whole", rows=16 if not packing else 24, extra=extra)
    reference = train(whole).losses
    checkpoint = Path(whole.output_dir) / "checkpoint-3"
    assert checkpoint.is_dir()
    resumed_cfg = make_cfg(tiny_llama_dir, tmp_path, "resumed", rows=16 if not packing else 24,
                           extra=extra + f"resume_from_checkpoint: {checkpoint}\n")
    history = train(resumed_cfg).metrics["train_loss_history"]
    # the history restored from the checkpoint (steps 1-3) is kept, then steps 4-6 are new
    assert [entry["step"] for entry in history] == [1, 2, 3, 4, 5, 6]
    assert len(reference) == 6
    assert [entry["loss"] for entry in history[3:]] == pytest.approx(reference[3:], rel=1e-5)


def test_loss_watchdog_stops_without_saving(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = make_cfg(tiny_llama_dir, tmp_path, "watchdog", rows=8,
                   extra="max_steps: 10\nloss_watchdog_threshold: 0.01\nloss_watchdog_patience: 2\n")
    with pytest.raises(TrainingError, match="loss_watchdog_threshold"):
        train(cfg)
    out = Path(cfg.output_dir)
    assert not (out / "model.safetensors").exists()
    assert len(json.loads((out / "metrics.json").read_text())["train_loss_history"]) == 2


def test_refusal_comes_before_loading(tmp_path: Path) -> None:
    # base_model is a hub id that cannot be reached offline: any loading would fail differently.
    cfg = load("base_model: nobody/nothing\nlearning_rate: 1e-4\ndatasets:\n  - path: missing.jsonl\n"
               "    type: alpaca\nadam_beta3: 0.9999\n").cfg
    with pytest.raises(NotSupportedYet, match="`adam_beta3` is not supported yet"):
        train(cfg)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------

def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    script = Path(sys.executable).parent / "axolotl"
    return subprocess.run([str(script), *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _write_cfg(model_dir: Path, tmp: Path, extra: str = "") -> Path:
    write_rows(toy_rows(8), tmp / "data", "jsonl")
    path = tmp / "cfg.yml"
    path.write_text(f"base_model: {model_dir}\nlearning_rate: 1e-3\ndatasets:\n  - path: {tmp / 'data.jsonl'}\n"
                    f"    type: alpaca\ndataset_prepared_path: {tmp / 'prep'}\noutput_dir: {tmp / 'out'}\n"
                    f"sequence_len: 256\nmax_steps: 2\noptimizer: adamw_torch\ndataset_num_proc: 1\n{extra}")
    return path


def test_cli_train_writes_outputs(tiny_llama_dir: Path, tmp_path: Path) -> None:
    path = _write_cfg(tiny_llama_dir, tmp_path)
    result = _cli(["train", str(path), "--save-strategy", "steps", "--save-steps", "1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    for name in ("model.safetensors", "tokenizer.json", "axolotl_config.yml", "metrics.json"):
        assert (out / name).is_file(), name
    assert (out / "checkpoint-2").is_dir(), "checkpoints are kept beside the final model"
    # ... and a resumed run from that checkpoint through the CLI flag runs no further steps.
    again = _cli(["train", str(path), "--resume-from-checkpoint", str(out / "checkpoint-2")], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]


def test_cli_refuses_unsupported_key_before_loading(tiny_llama_dir: Path, tmp_path: Path) -> None:
    path = _write_cfg(tiny_llama_dir, tmp_path, extra="adam_beta3: 0.9999\n")
    result = _cli(["train", str(path)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "`adam_beta3` is not supported yet" in result.stderr
    assert "Loading weights" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "prep").exists(), "nothing may be prepared for a refused config"
