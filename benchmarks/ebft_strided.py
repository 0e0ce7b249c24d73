"""Strided EBFT with LoRA on one GPU through the real `train` path: ebft/alignment per step,
tokens/s and peak memory.

Workload: a Llama-3.2-1B-shaped model (random init, bf16 autocast), LoRA r=16 on all linear
layers, flex_attention (`--dense` for the dense-mask path), strided mode with the defaults of
`examples/ebft/llama-1b-ebft-strided.yaml` (stride 8, context 8, 8 generated tokens per block,
4 samples, RLOO, whitening, ce_coef 0.03) on documents of `--seq` tokens, one per step. A random
model has nothing to match, so the documents are made learnable: each is a 16-token random motif
repeated to full length, drawn from a pool of 8, and LoRA's learning rate is high (2e-4). With
whitening the mean alignment is capped at 1/sqrt(4) = 0.5 and a random model starts next to that
cap, so use `--no-whitening` to watch the alignment rise; the throughput figures are what the loop
costs either way.

Reported: document tokens/s (the trainer's count), rollout tokens/s (samples x anchors x
generated tokens per second), seconds per step, peak allocated GiB; all after `--warmup` steps.

    python benchmarks/ebft_strided.py                 # on the GPU, ~30 steps
    python benchmarks/ebft_strided.py --tiny          # CPU smoke run (figures meaningless)
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu",
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
TINY = dict(LLAMA_1B, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16)
MOTIF, POOL = 16, 8


def write_model_dir(path: Path, shape: dict[str, Any]) -> Path:
    """config.json + a word-level tokenizer covering the vocabulary (the data is pre-tokenized)."""
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    LlamaConfig(**shape).save_pretrained(path)
    vocab = {f"t{i}": i for i in range(shape["vocab_size"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t3"))
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="t0", bos_token="t1", eos_token="t2",
                            unk_token="t3").save_pretrained(path)
    return path


def write_documents(path: Path, rows: int, length: int, vocab: int, seed: int) -> Path:
    """`rows` documents, each one of `POOL` random `MOTIF`-token motifs repeated to `length` tokens."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    motifs = [rng.integers(4, vocab, size=MOTIF) for _ in range(POOL)]
    docs = [np.resize(motifs[i % POOL], length).tolist() for i in range(rows)]
    pq.write_table(pa.table({"input_ids": docs}), path)
    return path


def config_text(model_dir: Path, data: Path, work: Path, args: argparse.Namespace) -> str:
    attention = "sdp_attention: true" if args.dense else "flex_attention: true"
    return f"""
base_model: {model_dir}
reinit_weights: true
seed: 1234
rl: ebft
ebft:
  mode: strided
  stride: 8
  context_length: 8
  generate_max_len: 8
  n_samples_per_prompt: 4
  temperature: 0.6
  feature_layers: [0.25, 0.5, 0.75]
  embed_method: last_token
  use_whitening: {'false' if args.no_whitening else 'true'}
  alignment_coef: 1.0
  diversity_coef: 1.0
  rl_coef: 1.0
  ce_coef: 0.03
  advantage_estimator: rloo
datasets:
  - path: {data}
dataset_prepared_path: {work / 'prepared'}
sequence_len: {args.seq}
micro_batch_size: 1
gradient_accumulation_steps: 1
max_steps: {args.warmup + args.steps}
learning_rate: {args.lr}
optimizer: {'adamw_torch' if args.tiny else 'adamw_torch_fused'}
lr_scheduler: constant
adapter: lora
lora_r: 16
lora_alpha: 32
lora_target_linear: true
{'' if args.tiny else 'bf16: true'}
{attention}
{'' if not args.gc else 'gradient_checkpointing: true' + chr(10) + 'gradient_checkpointing_kwargs:' + chr(10) + '  use_reentrant: true'}
logging_steps: 1
save_strategy: 'no'
output_dir: {work / 'out'}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="measured steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seq", type=int, default=1024, help="tokens per document")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--dense", action="store_true", help="dense masks (SDPA) instead of flex_attention")
    parser.add_argument("--gc", action="store_true", help="reentrant gradient checkpointing")
    parser.add_argument("--no-whitening", action="store_true",
                        help="raw features: with whitening the mean alignment is capped at 1/sqrt(samples)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, 64-token documents, dense")
    parser.add_argument("--out", type=Path, help="append the JSON result here")
    args = parser.parse_args()
    if args.tiny:
        args.seq, args.dense, args.lr = min(args.seq, 64), True, 1e-2
    import peft
    import torch
    import transformers

    from axolotl.config.environment import Environment
    from axolotl.config.loader import load_config_text
    from axolotl.training.callbacks import StepClock
    from axolotl.training.sft import train

    shape = TINY if args.tiny else LLAMA_1B
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"# {time.strftime('%Y-%m-%d')} torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}, device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = write_model_dir(work / "model", shape)
        data = write_documents(work / "docs.parquet", 4 * (args.warmup + args.steps), args.seq, shape["vocab_size"], 7)
        text = config_text(model_dir, data, work, args)
        cfg = load_config_text(text, "ebft_strided.yml", env=Environment.detect()).cfg
        clock = StepClock()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        result = train(cfg, extra_callbacks=[clock])
    history = result.metrics["train_loss_history"]
    print(f"{'step':>4} {'align':>7} {'divers':>7} {'cfm':>8} {'reward':>7} {'loss':>8} {'blocks':>6}")
    for entry in history:
        print(f"{entry['step']:>4} {entry.get('ebft/alignment', float('nan')):>7.3f} "
              f"{entry.get('ebft/diversity', float('nan')):>7.3f} {entry.get('ebft/cfm_loss', float('nan')):>8.3f} "
              f"{entry.get('ebft/reward', float('nan')):>7.3f} {entry['loss']:>8.4f} "
              f"{entry.get('ebft/blocks', 0):>6.0f}")
    seconds = clock.times[-1] - clock.times[args.warmup - 1]
    steps = len(clock.times) - args.warmup
    doc_tokens = clock.tokens[-1] - clock.tokens[args.warmup - 1]
    blocks = np.mean([entry.get("ebft/blocks", 0) for entry in history[args.warmup:]])
    rollout_tokens = blocks * 4 * 8 * steps
    alignment = [entry["ebft/alignment"] for entry in history if "ebft/alignment" in entry]
    summary = {
        "device": device, "seq": args.seq, "attention": "dense" if args.dense else "flex", "gc": args.gc,
        "whitening": not args.no_whitening,
        "steps": steps, "seconds_per_step": round(seconds / steps, 3),
        "document_tokens_per_s": round(doc_tokens / seconds, 1), "rollout_tokens_per_s": round(rollout_tokens / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "alignment_first5": round(float(np.mean(alignment[:5])), 4), "alignment_last5": round(float(np.mean(alignment[-5:])), 4),
    }
    print(json.dumps(summary))
    if args.out:
        with args.out.open("a") as handle:
            handle.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
