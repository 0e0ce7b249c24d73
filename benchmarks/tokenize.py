"""Preprocessing throughput through the real pipeline, in tokens/s, at three scopes.

Workloads (issue 3): 20k two-turn chats, 1k fifty-turn chats, 20k alpaca rows, `dataset_num_proc:
2`, `sequence_len: 100000` (nothing dropped). Per workload, the median of `--repeats` runs of:

- `tokenize`: one dataset entry read and tokenized with its labels and length rules
  (`tokenize_entry`), the step the reference reports as "Tokenizing Prompts";
- `prepare`: the whole `prepare_datasets` (also statistics, shuffle and the atomic save);
- `command`: `axolotl preprocess CONFIG` as a fresh process (Python start-up and imports too).

Inputs are written to `--inputs DIR` (kept, so another framework can be run on the very same
files: a tiny byte-level BPE tokenizer with a Llama config.json as `DIR/tiny-model`, and
`DIR/{chat2,chat50,alpaca}.jsonl`), or to a temporary folder.

    python benchmarks/tokenize.py [--tokenizer DIR] [--inputs DIR] [--repeats 3] [--rows-scale 1.0]
"""

from __future__ import annotations

import os
import sys

# This file is named like the standard library's `tokenize`; keep its folder off the import path
# so libraries importing `tokenize` get the real one.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets  # noqa: F401  (imported before timing: start-up is the `command` column's business)

from axolotl.config.environment import Environment
from axolotl.config.loader import load_config_text
from axolotl.data.pipeline import prepare_datasets, tokenize_entry
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing import alpaca_rows, build_tiny_tokenizer, chat_rows, write_rows

WORKLOADS = {"chat2": ("chat 2-turn", "chat_template"), "chat50": ("chat 50-turn", "chat_template"),
             "alpaca": ("alpaca", "alpaca")}


def write_inputs(folder: Path, scale: float, tokenizer: Path | None) -> Path:
    """The three data files and (unless given) the tiny tokenizer with a model config."""
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(chat_rows(int(20_000 * scale), turns=2), folder / "chat2.jsonl", "jsonl")
    write_rows(chat_rows(int(1_000 * scale), turns=50), folder / "chat50.jsonl", "jsonl")
    write_rows(alpaca_rows(int(20_000 * scale)), folder / "alpaca.jsonl", "jsonl")
    if tokenizer is not None:
        return tokenizer
    model = build_tiny_tokenizer(folder / "tiny-model")
    from transformers import AutoTokenizer, LlamaConfig

    loaded = AutoTokenizer.from_pretrained(model)
    LlamaConfig(vocab_size=len(loaded), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, bos_token_id=loaded.bos_token_id,
                eos_token_id=loaded.eos_token_id, pad_token_id=loaded.pad_token_id).save_pretrained(model)
    return model


def config_text(model: Path, data: Path, kind: str, prepared: Path) -> str:
    template = "chat_template: chatml\n" if kind == "chat_template" else ""
    return (f"base_model: {model}\nlearning_rate: 1e-4\nmicro_batch_size: 1\nnum_epochs: 1\n"
            f"sequence_len: 100000\ndataset_num_proc: 2\ndataset_prepared_path: {prepared}\n{template}"
            f"datasets:\n  - path: {data}\n    type: {kind}\n")


def timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def measure(model: Path, data: Path, kind: str, work: Path) -> tuple[float, float, float, int, int]:
    prepared = work / "prepared"
    shutil.rmtree(prepared, ignore_errors=True)
    text = config_text(model, data, kind, prepared)
    cfg = load_config_text(text, "bench.yml", env=Environment()).cfg
    tokenizer = load_tokenizer(cfg)
    tokenize_s, (_, stats) = timed(lambda: tokenize_entry(cfg, tokenizer, cfg.datasets[0], 0))
    prepare_s, prepared_data = timed(lambda: prepare_datasets(cfg, tokenizer))
    shutil.rmtree(prepared)
    config = work / "bench.yml"
    config.write_text(text)
    command = [sys.executable, "-m", "axolotl.cli.main", "preprocess", str(config)]
    command_s, done = timed(lambda: subprocess.run(command, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(f"`axolotl preprocess` failed:\n{done.stderr[-2000:]}")
    shutil.rmtree(prepared)
    assert stats.tokens == prepared_data.stats.train_tokens
    return tokenize_s, prepare_s, command_s, stats.tokens, prepared_data.stats.train_trained_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="tokenizer/model directory (default: tiny local BPE)")
    parser.add_argument("--inputs", type=Path, help="write (and keep) the input files here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows-scale", type=float, default=1.0, help="scale the row counts (quick runs)")
    parser.add_argument("--workloads", default="chat2,chat50,alpaca")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = args.inputs or work / "inputs"
        model = write_inputs(inputs, args.rows_scale, args.tokenizer)
        print(f"tokenizer: {model}   dataset_num_proc: 2   repeats: {args.repeats} (median)   cpus: {os.cpu_count()}")
        print(f"{'workload':<13} {'tokens':>10} {'trained':>10} {'tokenize s':>10} {'tok/s':>11} "
              f"{'prepare s':>9} {'tok/s':>11} {'command s':>9} {'tok/s':>9}")
        for key in args.workloads.split(","):
            name, kind = WORKLOADS[key]
            runs = [measure(model, inputs / f"{key}.jsonl", kind, work) for _ in range(args.repeats)]
            tokens, trained = runs[0][3], runs[0][4]
            tok, prep, cmd = (statistics.median(run[column] for run in runs) for column in range(3))
            print(f"{name:<13} {tokens:>10,} {trained:>10,} {tok:>10.2f} {tokens / tok:>11,.0f} "
                  f"{prep:>9.2f} {tokens / prep:>11,.0f} {cmd:>9.2f} {tokens / cmd:>9,.0f}")


if __name__ == "__main__":
    main()
