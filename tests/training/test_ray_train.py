"""`use_ray: true` on CPU: two Ray Train workers train exactly like one process with the same global batch.

Acceptance (issue 9): `axolotl train CONFIG --use-ray` with `ray_num_workers: 2`,
`resources_per_worker: {CPU: 1}` and `micro_batch_size 2 x accumulation 1` logs the per-step losses
and grad norms of `micro_batch_size 2 x accumulation 2` in one process and saves the same weights,
as the torchrun run of tests/training/test_multi_process.py does. Ray starts a private local cluster
(`RAY_ADDRESS=local`), so the test never joins a cluster that happens to run on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from axolotl.testing import write_rows
from axolotl.testing.configs import load

pytest.importorskip("ray.train.torch", reason="Ray Train is an optional extra: pip install 'axolotl[ray]'")

WORDS = ("apple", "river", "stone", "cloud")


def _config(model_dir: Path, tmp: Path, name: str, accumulation: int, ray: bool) -> Path:
    write_rows([{"instruction": f"Say the word for {i}." + " Please." * (i % 3), "input": "",
                 "output": WORDS[i % 4]} for i in range(32)], tmp / "data", "jsonl")
    keys = {"base_model": str(model_dir), "learning_rate": 1e-3, "optimizer": "adamw_torch",
            "lr_scheduler": "constant", "datasets": [{"path": "data.jsonl", "type": "alpaca"}],
            "dataset_prepared_path": "prepared", "output_dir": name, "sequence_len": 128,
            "sample_packing": True, "micro_batch_size": 2, "gradient_accumulation_steps": accumulation,
            "max_steps": 4, "save_strategy": "no", "dataset_num_proc": 1, "seed": 3}
    if ray:
        keys.update(use_ray=True, ray_num_workers=2, resources_per_worker={"CPU": 1}, ray_run_name="tiny",
                    dataset_prepared_path="prepared_ray",  # prepared by the workers (local rank 0; rank 1 waits)
                    seed=99)  # the command line sets it back to 3: the workers must apply overrides too
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(keys))
    return path


def _history(output_dir: Path) -> list[dict[str, float]]:
    return json.loads((output_dir / "metrics.json").read_text())["train_loss_history"]


def test_two_ray_workers_train_like_one_process_with_the_same_global_batch(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    from axolotl.training.sft import train

    monkeypatch.chdir(tmp_path)  # the config's relative paths are meant from here, on the workers too
    train(load(_config(tiny_llama_dir, tmp_path, "one", accumulation=2, ray=False).read_text()).cfg)
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "AXOLOTL_LAUNCHED", "RAY_ADDRESS")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1", RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
    command = [str(Path(sys.executable).parent / "axolotl"), "train", "two.yml", "--seed", "3"]
    _config(tiny_llama_dir, tmp_path, "two", accumulation=1, ray=True)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "launching: Ray Train, 2 workers x {'CPU': 1}" in result.stderr
    assert result.stdout.count("model saved to two") == 1, result.stdout

    out = tmp_path / "two"
    two, one = _history(out), _history(tmp_path / "one")
    assert [e["step"] for e in two] == [e["step"] for e in one] == [1, 2, 3, 4]
    for key in ("loss", "grad_norm"):  # same rows per step, same token count: equal up to summation order
        assert [e[key] for e in two] == pytest.approx([e[key] for e in one], rel=1e-5, abs=1e-6), key
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max((a[key] - b[key]).abs().max().item() for key in a) < 1e-5
    resolved = yaml.safe_load((out / "axolotl_config.yml").read_text())
    assert (resolved["world_size"], resolved["batch_size"], resolved["use_ray"]) == (2, 4, True)
    assert (tmp_path / "ray_results" / "tiny").is_dir(), "Ray's records go beside output_dir, under the run name"
