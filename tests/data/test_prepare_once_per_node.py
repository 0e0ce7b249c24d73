"""Under a multi-process launch the node's first rank prepares the data and the others load its
cache (two real processes joined by a gloo process group on CPU)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch.multiprocessing as mp

from axolotl.testing import write_rows
from axolotl.testing.datasets import alpaca_rows


def _rank(rank: int, world: int, port: int, workdir: str, tokenizer_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    os.chdir(workdir)  # no dataset_prepared_path: the default folder, relative to here
    from transformers import AutoTokenizer

    import axolotl.data.pipeline as pipeline
    from axolotl.testing.configs import load

    cfg = load(f"base_model: {tokenizer_dir}\nlearning_rate: 1.0e-4\nsequence_len: 128\ndataset_num_proc: 1\n"
               f"datasets:\n  - path: {workdir}/data.jsonl\n    type: alpaca\n").cfg
    prepared_here = []
    original = pipeline._prepare
    pipeline._prepare = lambda *args: (prepared_here.append(rank), original(*args))[1]
    result = pipeline.prepare_datasets_once_per_node(cfg, AutoTokenizer.from_pretrained(tokenizer_dir))
    Path(workdir, f"rank{rank}.json").write_text(json.dumps(
        {"prepared": len(prepared_here), "rows": len(result.train), "path": str(result.path)}))
    from axolotl.process_group import release_process_group

    release_process_group()  # as the launchable verbs do: an open gloo group can abort the process at exit


def test_first_rank_prepares_and_the_other_reuses(tiny_tokenizer_dir: Path, tmp_path: Path) -> None:
    write_rows(alpaca_rows(12), tmp_path / "data", "jsonl")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tmp_path), str(tiny_tokenizer_dir)), nprocs=2, join=True)
    first, second = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert first["prepared"] == 1 and second["prepared"] == 0
    assert first["rows"] == second["rows"] > 0 and first["path"] == second["path"]
