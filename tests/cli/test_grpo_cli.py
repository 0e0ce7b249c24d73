"""`axolotl vllm-serve` (the server command line built from the `vllm:` block, and its refusals) and
`axolotl preprocess` for a GRPO config. vLLM is not installable on this CPU machine: the command is
checked as built, and the missing-vLLM error as printed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.cli.vllm_serve import port_mismatch, server_command, unsupported_keys
from axolotl.testing import write_rows
from axolotl.testing.configs import load

from .conftest import EXAMPLES_DIR


def cfg_of(vllm: dict[str, Any] | None = None, trl: dict[str, Any] | None = None, **top: Any) -> Any:
    keys = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
            "datasets": [{"path": "p.jsonl"}],
            "trl": {"num_generations": 4, "reward_funcs": ["rewards.r"], "use_vllm": True, **(trl or {})},
            **({"vllm": vllm} if vllm is not None else {}), **top}
    return load(yaml.safe_dump(keys)).cfg


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def test_server_command_from_the_vllm_block() -> None:
    command = server_command(cfg_of({"host": "0.0.0.0", "port": 8011, "tensor_parallel_size": 2,
                                     "data_parallel_size": 1, "gpu_memory_utilization": 0.7, "dtype": "bfloat16",
                                     "max_model_len": 4096, "enable_prefix_caching": True, "enforce_eager": True,
                                     "reasoning_parser": "deepseek_r1", "worker_extension_cls": "my.Ext"},
                                    revision_of_model="abc123", trust_remote_code=True))
    assert command[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert (flag(command, "--host"), flag(command, "--port")) == ("0.0.0.0", "8011")
    assert (flag(command, "--tensor-parallel-size"), flag(command, "--data-parallel-size")) == ("2", "1")
    assert (flag(command, "--gpu-memory-utilization"), flag(command, "--dtype")) == ("0.7", "bfloat16")
    assert (flag(command, "--max-model-len"), flag(command, "--revision")) == ("4096", "abc123")
    assert {"--enable-prefix-caching", "--enforce-eager", "--trust-remote-code"} <= set(command)
    assert (flag(command, "--reasoning-parser"), flag(command, "--worker-extension-cls")) == ("deepseek_r1", "my.Ext")
    # the protocol TRL's client speaks: NCCL weight transfer and processed log-probs
    assert json.loads(flag(command, "--weight-transfer-config")) == {"backend": "nccl"}
    assert flag(command, "--logprobs-mode") == "processed_logprobs"


def test_server_binds_to_localhost_unless_told_otherwise() -> None:
    command = server_command(cfg_of())
    assert (flag(command, "--host"), flag(command, "--port")) == ("127.0.0.1", "8000")
    assert flag(command, "--gpu-memory-utilization") == "0.9" and "--max-model-len" not in command
    assert "--no-enable-prefix-caching" not in command and "--enable-prefix-caching" not in command


def test_the_example_config_serves_what_it_trains() -> None:
    cfg = load((EXAMPLES_DIR / "grpo" / "qwen2.5-0.5b-grpo.yaml").read_text()).cfg
    command = server_command(cfg)
    assert flag(command, "--port") == str(cfg.trl.vllm_server_port) and flag(command, "--max-model-len") == "1024"
    assert unsupported_keys(cfg) == [] and port_mismatch(cfg) is None


def test_port_mismatch_is_reported() -> None:
    assert "port 8000" in port_mismatch(cfg_of(trl={"vllm_server_port": 8001}))


def test_refused_and_wrong_vllm_keys(cli, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yml"
    text = yaml.safe_dump({"base_model": "some/model", "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
                           "datasets": [{"path": "p.jsonl"}], "trl": {"num_generations": 4, "reward_funcs": ["r.r"]},
                           "vllm": {"serve_module": "my.server"}})
    config.write_text(text)
    refused = cli(["vllm-serve", str(config)], cwd=tmp_path)
    assert refused.returncode == 2 and "`vllm.serve_module` is not supported yet" in refused.stderr
    config.write_text(text.replace("serve_module: my.server", "enable_reasoning: true"))
    wrong = cli(["vllm-serve", str(config)], cwd=tmp_path)
    assert wrong.returncode == 1 and "needs `vllm.reasoning_parser`" in wrong.stderr


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_says_what_to_install(cli, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump({"base_model": "some/model", "learning_rate": 1e-5, "rl": "grpo",
                                      "micro_batch_size": 4, "datasets": [{"path": "p.jsonl"}],
                                      "trl": {"num_generations": 4, "reward_funcs": ["r.r"]}}))
    result = cli(["vllm-serve", str(config)], cwd=tmp_path)
    assert result.returncode == 1
    assert "vLLM is not installed: `pip install axolotl[vllm]`" in result.stderr and "Traceback" not in result.stderr
    legacy = cli([str(config)], module="axolotl.cli.vllm_serve", cwd=tmp_path)
    assert legacy.returncode == 1 and "pip install axolotl[vllm]" in legacy.stderr


def test_preprocess_a_grpo_config(cli, tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "rewards.py").write_text(
        "def to_prompt(cfg, *args, **kwargs):\n"
        "    def fn(row, tokenizer=None):\n"
        "        return {'prompt': [{'role': 'user', 'content': row['question']}], 'answer': row['answer']}\n"
        "    return fn, {'remove_columns': '__all__'}\n")
    data = write_rows([{"question": f"What is {i} + {i}?", "answer": str(2 * i), "noise": i} for i in range(10)],
                      tmp_path / "q", "jsonl")
    config = tmp_path / "grpo.yml"
    config.write_text(yaml.safe_dump({
        "base_model": str(tiny_llama_dir), "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
        "datasets": [{"path": str(data), "type": "rewards.to_prompt"}], "val_set_size": 2,
        "dataset_prepared_path": str(tmp_path / "prepared"),
        "trl": {"num_generations": 4, "reward_funcs": ["rewards.to_prompt"]}}))
    result = cli(["preprocess", str(config), "--debug", "--debug-num-examples", "1"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "train rows: 8   eval rows: 2" in result.stdout and "prepared data saved at" in result.stdout
    assert "<|im_start|>user\nWhat is" in result.stdout and "<|im_start|>assistant\n" in result.stdout
    assert "answer: '" in result.stdout and "noise" not in result.stdout
