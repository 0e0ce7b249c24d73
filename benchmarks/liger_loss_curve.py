"""Loss curves through the real `train()` path with and without a kernel plugin, same seed and data.

The acceptance check of issue 10: the reference's Liger plugin block (rope, rms_norm,
glu_activation, layer_norm, fused linear cross-entropy) trains unchanged and its loss curve
matches the unfused run. Workload: a Llama-shaped model (hidden 1024, 8 layers, vocab 32000,
random init, `bf16: true`), documents sampled from a fixed random Markov chain (4 successors per
token, so the loss falls from ~10.4 towards ~1.4 and the curves are worth comparing) packed into
1024-token rows, micro-batch 4, AdamW lr 3e-4 constant, 50 steps.

    python benchmarks/liger_loss_curve.py [--arms plain,liger,cce,chunked] [--steps 50] [--assert-rel 0.02]
    python benchmarks/liger_loss_curve.py --tiny      # CPU check of the plumbing (figures meaningless)

Each arm runs in its own process: Liger replaces module-level transformers functions, which
would otherwise leak into the arms after it. Printed: both curves, the largest relative
difference of each arm from the first, useful tokens/s (after `--warmup` steps) and peak memory.
Liger and CCE need a CUDA GPU; where there is none the arm is skipped and the script says so.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import datetime
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
             num_key_value_heads=8, head_dim=64, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=False, hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=0)
TINY = dict(SHAPE, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16)
LIGER = ("plugins:\n  - axolotl.integrations.liger.LigerPlugin\nliger_rope: true\nliger_rms_norm: true\n"
         "liger_glu_activation: true\nliger_layer_norm: true\nliger_fused_linear_cross_entropy: true\n")
ARMS: dict[str, str] = {
    "plain": "",
    "liger": LIGER,
    "cce": "plugins:\n  - axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin\n",
    "chunked": "chunked_cross_entropy: true\n",
}
"""Arm -> the config lines it adds to the common config."""
NEEDS_CUDA = {"liger", "cce"}


def write_model_dir(path: Path, shape: dict[str, Any]) -> Path:
    """config.json + a word-level tokenizer covering the vocabulary (the data is pre-tokenized)."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    LlamaConfig(**shape).save_pretrained(path)
    backend = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(shape["vocab_size"])}, unk_token="t3"))
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", bos_token="t1", eos_token="t2",
                            unk_token="t3").save_pretrained(path)
    return path


def write_markov_documents(path: Path, tokens_needed: int, vocab: int, max_len: int, seed: int) -> Path:
    """Documents of log-uniform length 64..max_len from a Markov chain with 4 random successors per token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    successors = rng.integers(4, vocab, size=(vocab, 4))
    docs, total = [], 0
    while total < tokens_needed:
        length = int(np.exp(rng.uniform(np.log(64), np.log(max_len))))
        ids = [int(rng.integers(4, vocab))]
        choices = rng.integers(0, 4, size=length - 1)
        for choice in choices:
            ids.append(int(successors[ids[-1], choice]))
        docs.append(ids)
        total += length
    pq.write_table(pa.table({"input_ids": docs, "labels": docs}), path)
    return path


def config_text(work: Path, arm: str, steps: int, tiny: bool, cuda: bool) -> str:
    return "\n".join([
        f"base_model: {work / 'model'}", "reinit_weights: true", "seed: 1234",
        f"datasets:\n  - path: {work / 'docs.parquet'}", f"dataset_prepared_path: {work / 'prepared'}",
        f"sequence_len: {256 if tiny else 1024}", "sample_packing: true", "micro_batch_size: 4",
        "gradient_accumulation_steps: 1", f"max_steps: {steps}", "learning_rate: 3.0e-4", "lr_scheduler: constant",
        f"optimizer: {'adamw_torch_fused' if cuda else 'adamw_torch'}", "bf16: true", "sdp_attention: true",
        "logging_steps: 1", "save_strategy: 'no'", f"output_dir: {work / ('out-' + arm)}", "dataset_num_proc: 1",
    ]) + "\n" + ARMS[arm]


def run_arm(args: argparse.Namespace) -> None:
    """Child process: train one arm, write its curve and figures as JSON."""
    import torch

    from axolotl.config.loader import load_config_text
    from axolotl.training.callbacks import StepClock
    from axolotl.training.sft import train

    cuda = torch.cuda.is_available()
    work = Path(args.work)
    cfg = load_config_text(config_text(work, args.arm, args.steps, args.tiny, cuda), f"{args.arm}.yml").cfg
    clock = StepClock()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train(cfg, extra_callbacks=[clock])
    warm = min(args.warmup, len(clock.times) - 1)
    seconds = clock.times[-1] - clock.times[warm - 1] if warm > 0 else None
    rate = (clock.tokens[-1] - clock.tokens[warm - 1]) / seconds if seconds else None
    Path(args.result).write_text(json.dumps({
        "arm": args.arm, "losses": result.losses, "tokens_per_s": rate,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="plain,liger", help=f"comma list of {', '.join(ARMS)}; the first is the "
                                                              "baseline the others are compared with")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of tokens/s")
    parser.add_argument("--tiny", action="store_true", help="CPU check of the script (tiny model, 6 steps)")
    parser.add_argument("--assert-rel", type=float, help="exit 1 if any arm's loss differs from the baseline's by "
                                                         "more than this relative amount at any step")
    parser.add_argument("--out", type=Path, help="write the curves and figures here as JSON")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        args.steps = min(args.steps, 6)
        args.warmup = min(args.warmup, 2)
    if args.arm:
        run_arm(args)
        return
    import peft
    import torch
    import transformers

    arms = args.arms.split(",")
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"# {datetime.date.today()}, torch {torch.__version__}, transformers {transformers.__version__}, peft "
          f"{peft.__version__}, device {device}, {'tiny' if args.tiny else 'hidden 1024 x 8 layers, vocab 32000'}, "
          f"{args.steps} steps")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shape = TINY if args.tiny else SHAPE
        write_model_dir(work / "model", shape)
        row = 256 if args.tiny else 1024
        write_markov_documents(work / "docs.parquet", row * 4 * (args.steps + 10), shape["vocab_size"], row, 1234)
        for arm in arms:
            if arm in NEEDS_CUDA and not cuda:
                print(f"# arm `{arm}` skipped: its kernels need a CUDA GPU (the plugin refuses to run without one)")
                continue
            result_file = work / f"{arm}.json"
            command = [sys.executable, os.path.abspath(__file__), "--arm", arm, "--work", str(work), "--result",
                       str(result_file), "--steps", str(args.steps), "--warmup", str(args.warmup)]
            subprocess.run(command + (["--tiny"] if args.tiny else []), check=True)
            results.append(json.loads(result_file.read_text()))
    report(results, args)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not results:
        return
    base = results[0]
    print("\nstep " + "".join(f"{r['arm']:>12}" for r in results))
    for step in range(max(len(r["losses"]) for r in results)):
        print(f"{step + 1:>4} " + "".join(f"{r['losses'][step]:>12.5f}" if step < len(r["losses"]) else f"{'-':>12}"
                                          for r in results))
    print(f"\n{'arm':<10} {'max rel diff':>13} {'tokens/s':>10} {'peak GiB':>9}")
    worst = 0.0
    for result in results:
        diffs = [abs(a - b) / abs(b) for a, b in zip(result["losses"], base["losses"])]
        result["max_rel_diff"] = max(diffs) if diffs else None
        if result is not base and diffs:
            worst = max(worst, max(diffs))
        rate = f"{result['tokens_per_s']:>10,.0f}" if result["tokens_per_s"] else f"{'-':>10}"
        peak = f"{result['peak_gib']:>9.2f}" if result["peak_gib"] is not None else f"{'-':>9}"
        print(f"{result['arm']:<10} {result['max_rel_diff'] or 0:>13.2e} {rate} {peak}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.assert_rel is not None and worst > args.assert_rel:
        print(f"FAIL: loss curves differ by up to {worst:.3g} (> {args.assert_rel})")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
