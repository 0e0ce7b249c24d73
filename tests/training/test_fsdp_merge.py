"""`axolotl merge-sharded-fsdp-weights`: a sharded FSDP checkpoint -> one safetensors model.

The checkpoint is made the way accelerate saves `SHARDED_STATE_DICT`: `{"model": state_dict}` through
torch.distributed.checkpoint into `pytorch_model_fsdp_0/`. One test shards a real model with FSDP2
across two CPU processes (gloo), so each rank writes its own file of DTensor shards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from axolotl.testing.configs import load
from axolotl.training.fsdp_merge import (
    MergeError,
    find_sharded_checkpoint,
    load_sharded_state_dict,
    merge_sharded_checkpoint,
    plan_sharded_merge,
)


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([str(Path(sys.executable).parent / "axolotl"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _scaled_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The tiny model's weights times 2: what the 'trained' checkpoint holds (so a merge that copied
    the base model instead would be caught)."""
    from safetensors.torch import load_file

    return {key: value * 2 for key, value in load_file(str(model_dir / "model.safetensors")).items()}


def _save_single_process(state: dict[str, torch.Tensor], directory: Path) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.save({"model": state}, storage_writer=dcp.FileSystemWriter(str(directory)), no_dist=True)


def _config(model_dir: Path, tmp_path: Path) -> Any:
    return load(f"base_model: {model_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                f"datasets:\n  - path: {tmp_path / 'd.jsonl'}\n    type: alpaca\n").cfg


def _assert_loads_with(directory: Path, expected: dict[str, torch.Tensor]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory)
    state = model.state_dict()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    AutoTokenizer.from_pretrained(directory)


def test_single_file_checkpoint_merges_and_loads(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path)
    weights = _scaled_weights(tiny_llama_dir)
    _save_single_process(weights, tmp_path / "out" / "checkpoint-4" / "pytorch_model_fsdp_0")
    merged = load_sharded_state_dict(tmp_path / "out" / "checkpoint-4" / "pytorch_model_fsdp_0")
    assert set(merged) == set(weights)  # the `model.` wrapper key is gone
    target = merge_sharded_checkpoint(cfg, plan_sharded_merge(cfg))
    assert target == tmp_path / "out" / "merged"
    assert not list(target.parent.glob(".merged.*")), "no staging folder left behind"
    _assert_loads_with(target, weights)


def test_an_existing_model_is_only_replaced_by_the_same_merge_or_force(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path)
    _save_single_process(_scaled_weights(tiny_llama_dir), tmp_path / "out" / "pytorch_model_fsdp_0")
    merge_sharded_checkpoint(cfg, plan_sharded_merge(cfg))
    plan_sharded_merge(cfg)  # its own earlier output: may be rewritten
    (tmp_path / "out" / "merged" / "axolotl_merge.json").write_text("{}")  # now "another model"
    with pytest.raises(FileExistsError, match="--force"):
        plan_sharded_merge(cfg)
    assert merge_sharded_checkpoint(cfg, plan_sharded_merge(cfg, force=True)).is_dir()


def test_the_newest_checkpoint_wins_and_a_final_sharded_save_before_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9"):
        (out / name / "pytorch_model_fsdp_0").mkdir(parents=True)
        (out / name / "pytorch_model_fsdp_0" / ".metadata").write_bytes(b"")
    assert find_sharded_checkpoint(out) == out / "checkpoint-10" / "pytorch_model_fsdp_0"
    assert find_sharded_checkpoint(out, out / "checkpoint-2") == out / "checkpoint-2" / "pytorch_model_fsdp_0"
    (out / "pytorch_model_fsdp_0").mkdir()
    (out / "pytorch_model_fsdp_0" / ".metadata").write_bytes(b"")
    assert find_sharded_checkpoint(out) == out / "pytorch_model_fsdp_0"


def test_no_checkpoint_names_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="SHARDED_STATE_DICT"):
        find_sharded_checkpoint(tmp_path)
    with pytest.raises(MergeError, match="is not a sharded FSDP checkpoint"):
        find_sharded_checkpoint(tmp_path, tmp_path)


def test_lora_checkpoints_are_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path)
    _save_single_process({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": torch.ones(2, 2)},
                         tmp_path / "out" / "pytorch_model_fsdp_0")
    with pytest.raises(NotImplementedError, match="LoRA"):
        merge_sharded_checkpoint(cfg, plan_sharded_merge(cfg))


# --------------------------------------------------------------------------------------------
# a real 2-rank FSDP2 checkpoint, merged through the command line
# --------------------------------------------------------------------------------------------

def _shard_and_save(rank: int, world: int, port: int, model_dir: str, target: str) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(2)
    mesh = init_device_mesh("cpu", (world,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    state = model.state_dict()
    assert all(type(value).__name__ == "DTensor" for value in state.values())
    dcp.save({"model": state}, storage_writer=dcp.FileSystemWriter(target))
    dist.destroy_process_group()


def test_two_rank_fsdp2_checkpoint_merges_through_the_cli(tiny_llama_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "checkpoint-3" / "pytorch_model_fsdp_0"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_shard_and_save, args=(2, port, str(tiny_llama_dir), str(target)), nprocs=2, join=True)
    assert sorted(p.name for p in target.iterdir() if p.suffix == ".distcp") == ["__0_0.distcp", "__1_0.distcp"]
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                      f"datasets:\n  - path: {tmp_path / 'd.jsonl'}\n    type: alpaca\n")
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    result = cli(["merge-sharded-fsdp-weights", str(config)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"merged model saved to {tmp_path / 'out' / 'merged'}" in result.stdout
    _assert_loads_with(tmp_path / "out" / "merged", _scaled_weights(tiny_llama_dir))


def test_cli_without_a_checkpoint_fails_cleanly(tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                      f"datasets:\n  - path: {tmp_path / 'd.jsonl'}\n    type: alpaca\n")
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    result = cli(["merge-sharded-fsdp-weights", str(config)], cwd=tmp_path)
    assert result.returncode == 1 and "no sharded FSDP checkpoint" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
