"""Data parallelism on CPU (gloo): the real command under torchrun trains exactly like one process
with the same global batch, and ranks that resolved different configs stop together.

Acceptance (issue 9): `axolotl train CONFIG --launcher torchrun -- --nproc_per_node 2` with
`micro_batch_size 2 x 2 processes x accumulation 1` logs the per-step losses and grad norms of
`2 x 1 process x accumulation 2`, and saves the same weights. The data is packed, so the packing
sampler's split across ranks is what is under test (the Trainer's own loader shards unpacked data).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp
import yaml

from axolotl.data.sampler import MultipackBatchSampler
from axolotl.testing import write_rows
from axolotl.testing.configs import load

WORDS = ("apple", "river", "stone", "cloud")


def _config(model_dir: Path, tmp: Path, name: str, accumulation: int) -> Path:
    write_rows([{"instruction": f"Say the word for {i}." + " Please." * (i % 3), "input": "",
                 "output": WORDS[i % 4]} for i in range(32)], tmp / "data", "jsonl")
    keys = {"base_model": str(model_dir), "learning_rate": 1e-3, "optimizer": "adamw_torch",
            "lr_scheduler": "constant", "datasets": [{"path": str(tmp / "data.jsonl"), "type": "alpaca"}],
            "dataset_prepared_path": str(tmp / "prepared"), "output_dir": str(tmp / name), "sequence_len": 128,
            "sample_packing": True, "micro_batch_size": 2, "gradient_accumulation_steps": accumulation,
            "max_steps": 4, "save_strategy": "no", "dataset_num_proc": 1, "seed": 3}
    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(keys))
    return path


def _history(output_dir: Path) -> list[dict[str, float]]:
    return json.loads((output_dir / "metrics.json").read_text())["train_loss_history"]


def test_two_processes_train_like_one_with_the_same_global_batch(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from axolotl.training.sft import train

    single = train(load(_config(tiny_llama_dir, tmp_path, "one", accumulation=2).read_text()).cfg)
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).parent / "axolotl"), "train",
               str(_config(tiny_llama_dir, tmp_path, "two", accumulation=1)),
               "--launcher", "torchrun", "--", "--nproc_per_node", "2"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "--nproc_per_node 2" in result.stderr and result.stdout.count("model saved to") == 1

    out = tmp_path / "two"
    two = _history(out)
    one = _history(tmp_path / "one")
    assert [e["step"] for e in two] == [e["step"] for e in one] == [1, 2, 3, 4]
    # Same rows per optimizer step, summed and divided by the same token count: equal up to float
    # summation order (measured: identical on this machine).
    for key in ("loss", "grad_norm"):
        assert [e[key] for e in two] == pytest.approx([e[key] for e in one], rel=1e-5, abs=1e-6), key
    assert single.losses[-1] < single.losses[0]
    assert json.loads((out / "metrics.json").read_text())["num_input_tokens_seen"] == \
        json.loads((tmp_path / "one" / "metrics.json").read_text())["num_input_tokens_seen"]
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert max((a[key] - b[key]).abs().max().item() for key in a) < 1e-5
    resolved = yaml.safe_load((out / "axolotl_config.yml").read_text())
    assert (resolved["world_size"], resolved["batch_size"]) == (2, 4)
    assert not list(tmp_path.glob(".two.*")), "one rank publishes; no staging folder is left"


# --------------------------------------------------------------------------------------------
# ranks that disagree
# --------------------------------------------------------------------------------------------

def _rank(rank: int, world: int, port: int, workdir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    from axolotl.training.distributed import RanksDisagree, check_ranks_agree

    rate = "1.0e-4" if rank == 0 else "2.0e-4"
    cfg = load(f"base_model: m\nlearning_rate: {rate}\ndataset_num_proc: {rank + 1}\n"
               "datasets:\n  - path: d.jsonl\n    type: alpaca\n").cfg
    try:
        check_ranks_agree(cfg)
        outcome = "agreed"
    except RanksDisagree as error:
        outcome = str(error)
    Path(workdir, f"rank{rank}.txt").write_text(outcome)


def test_ranks_with_different_configs_all_stop_naming_rank_and_key(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert "rank 1: `learning_rate`" in message, message
        assert "dataset_num_proc" not in message  # a per-machine default, allowed to differ


def test_disagreements_lists_only_the_differing_keys() -> None:
    from axolotl.training.distributed import disagreements

    assert disagreements([{"a": 1, "b": 2}, {"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}]) == {2: ["b", "c"]}
    assert disagreements([{"a": 1}]) == {}


# --------------------------------------------------------------------------------------------
# the packing sampler under data parallelism
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("world", "accumulation"), [(2, 1), (4, 1), (2, 2)])
def test_packed_steps_split_across_ranks_like_accumulation(world: int, accumulation: int) -> None:
    """An optimizer step of `world` ranks x `accumulation` micro-batches covers exactly the bins one
    process covers with `world * accumulation` micro-batches, so the runs train alike; every rank
    gets the same number of full micro-batches."""
    lengths = np.random.default_rng(0).integers(5, 60, size=300)
    kwargs = {"sequence_len": 64, "micro_batch_size": 2, "seed": 1}
    one = list(MultipackBatchSampler(lengths, **kwargs))
    ranks = [list(MultipackBatchSampler(lengths, rank=r, world_size=world, **kwargs)) for r in range(world)]
    assert len({len(batches) for batches in ranks}) == 1 and all(len(b) == 2 for r in ranks for b in r)
    per_step = world * accumulation
    steps = len(ranks[0]) // accumulation
    for step in range(steps):
        together = sorted(tuple(bin_) for r in ranks for micro in r[step * accumulation:(step + 1) * accumulation]
                          for bin_ in micro)
        alone = sorted(tuple(bin_) for micro in one[step * per_step:(step + 1) * per_step] for bin_ in micro)
        assert together == alone, step


def test_launchable_verbs_leave_the_process_group_even_when_they_fail(tmp_path: Path) -> None:
    """A launched process must destroy its group before exiting (an open gloo group can abort the
    process at exit, and torchrun then reports the rank as failed)."""
    import torch.distributed as dist

    from axolotl.cli.output import releases_process_group

    @releases_process_group
    def verb() -> int:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        assert dist.is_initialized()
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        verb()
    assert not dist.is_initialized()
    from axolotl.cli import evaluate, train
    from axolotl.cli.launch import LAUNCHABLE_VERBS

    assert {"train": train.run, "evaluate": evaluate.run}.keys() == set(LAUNCHABLE_VERBS)
    assert all(run.__code__ is verb.__code__ for run in (train.run, evaluate.run))  # both wrapped
