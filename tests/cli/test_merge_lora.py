"""`axolotl merge-lora`, run for real on CPU (`CUDA_VISIBLE_DEVICES=""`): the merged model in
output_dir/merged loads with plain transformers, computes base + adapter and generates; a
different model already there is only replaced with --force; problems name their path."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from axolotl.models.adapters import apply_adapter
from axolotl.testing.configs import load

CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}
INPUT_IDS = torch.tensor([[1, 5, 9, 13, 17, 21]])


def _write_config(tmp_path: Path, base: Path) -> Path:
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump({"base_model": str(base), "learning_rate": 1e-4, "adapter": "lora",
                                      "lora_r": 4, "lora_alpha": 8, "lora_target_linear": True,
                                      "output_dir": str(tmp_path / "out")}))
    return config


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits


def _save_adapter(config: Path, base: Path, directory: Path, seed: int) -> torch.Tensor:
    """An adapter with random non-zero weights (what a short LoRA run leaves), saved with the
    tokenizer like a training run's output_dir; returns base + adapter logits."""
    cfg = load(config.read_text()).cfg
    cfg.peft_init_lora_weights = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = apply_adapter(cfg, AutoModelForCausalLM.from_pretrained(base)).eval()
    peft_model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    return _logits(peft_model)


def test_merge_loads_generates_and_is_protected_by_force(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path, tiny_llama_dir)
    expected = _save_adapter(config, tiny_llama_dir, tmp_path / "out", seed=0)
    result = cli(["merge-lora", str(config)], cwd=tmp_path, env=CPU_ONLY)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "out" / "merged"
    assert f"merged model saved to {target}" in result.stdout

    model = AutoModelForCausalLM.from_pretrained(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    torch.testing.assert_close(_logits(model), expected, rtol=0, atol=1e-5)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False,
                                           add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 4

    other = _save_adapter(config, tiny_llama_dir, tmp_path / "other", seed=1)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    refused = cli(["merge-lora", str(config), "--lora-model-dir", str(tmp_path / "other")], cwd=tmp_path, env=CPU_ONLY)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert str(target) in refused.stderr and "--force" in refused.stderr
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before

    forced = cli(["merge-lora", str(config), "--lora-model-dir", str(tmp_path / "other"), "--force"],
                 cwd=tmp_path, env=CPU_ONLY)
    assert forced.returncode == 0, forced.stderr
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(target)), other, rtol=0, atol=1e-5)
    assert json.loads((target / "axolotl_merge.json").read_text())["adapter_dir"] == str(tmp_path / "other")


def test_missing_adapter_is_a_clear_error(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path, tiny_llama_dir)
    result = cli(["merge-lora", str(config), "--lora-model-dir", str(tmp_path / "nowhere")], cwd=tmp_path,
                 env=CPU_ONLY)
    assert result.returncode == 1
    assert f"{tmp_path / 'nowhere'} (from --lora-model-dir) does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "merged").exists()


def test_legacy_entry_point(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path, tiny_llama_dir)
    expected = _save_adapter(config, tiny_llama_dir, tmp_path / "adapter", seed=2)
    result = cli([str(config), f"--lora_model_dir={tmp_path / 'adapter'}"], module="axolotl.cli.merge_lora",
                 cwd=tmp_path, env=CPU_ONLY)
    assert result.returncode == 0, result.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "merged")
    torch.testing.assert_close(_logits(merged), expected, rtol=0, atol=1e-5)


def test_help_lists_the_options(cli) -> None:
    result = cli(["merge-lora", "--help"])
    assert result.returncode == 0
    assert all(option in result.stdout for option in ("--lora-model-dir", "--force", "output_dir/merged"))
    assert "not implemented" not in result.stdout
