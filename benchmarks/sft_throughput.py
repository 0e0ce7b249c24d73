"""SFT throughput through the real `train` path: useful (non-pad) tokens/s, MFU and peak memory.

Workload (the one of `../shared/bench/anchor_sft.py`, so the two can run in one call): a
Llama-3.2-1B-shaped model (random init, fp32 weights with bf16 autocast), documents of
log-uniform 64-2048 random tokens packed into 4096-token rows, one row per step, AdamW (fused),
lr 1e-5. Full fine-tune or LoRA (r=16, all linear). The data is pre-tokenized, so the step time
is the trainer's, not the tokenizer's.

    python benchmarks/sft_throughput.py --case full-sdpa,full-flex,lora-flex [--steps 20 --warmup 5]

Case flags (appended with `-`, any order after the attention backend) switch on one option each,
so the table shows what each is worth: see `CASE_FLAGS`. `-16k` is the long-context case:
one 16384-token document per row (attention over the whole row), usually with `-gc`.

MFU = (6 * params * tokens/s + attention flops) / the device's dense bf16 peak (989 TFLOP/s for
H100/H200 SXM), counted by `axolotl.training.flops` (the same count `axolotl train` shows live),
with the attention term over the generated document lengths. First version: this is the figure
to beat in `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu",
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA_8B = dict(LLAMA_1B, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, tie_word_embeddings=False)
TINY = dict(LLAMA_1B, vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16)
"""`--tiny`: a CPU smoke run of the script itself (figures meaningless)."""


LIGER_BLOCK = ("plugins:\n  - axolotl.integrations.liger.LigerPlugin\nliger_rms_norm: true\nliger_glu_activation: true\n"
               "liger_fused_linear_cross_entropy: true")
"""The reference's best measured configuration (issue 10: rms_norm, glu, fused linear CE)."""
CASE_FLAGS: dict[str, str] = {
    "gc": "gradient_checkpointing: true",
    "compile": "torch_compile: true",
    "cce": "chunked_cross_entropy: true",
    "cutce": "plugins:\n  - axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin",
    "liger": LIGER_BLOCK,
    "lk": "lora_mlp_kernel: true\nlora_qkv_kernel: true\nlora_o_kernel: true",
    "tiled": "tiled_mlp: true",
    "offload": "activation_offloading: true",
    "pure": "",  # `bfloat16: true` instead of `bf16: true`, set below
    "16k": "",  # sequence_len 16384 and one 16384-token document per row, set below
}
"""Case flag -> the config lines it adds."""
LONG = 16384


def sequence_len(case: str) -> int:
    return LONG if "16k" in case.split("-")[2:] else 4096


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


def write_documents(path: Path, tokens_needed: int, vocab: int, seed: int,
                    fixed_length: int | None = None) -> tuple[Path, list[int]]:
    """The documents, and their lengths (for the attention FLOPs): log-uniform 64-2048 tokens, or
    all `fixed_length` long (the long-context case)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < tokens_needed:
        length = fixed_length or int(np.exp(rng.uniform(np.log(64), np.log(2048))))
        ids = rng.integers(4, vocab, size=length).tolist()
        docs.append(ids)
        total += length
    pq.write_table(pa.table({"input_ids": docs, "labels": docs}), path)
    return path, [len(d) for d in docs]


def config_text(model_dir: Path, data: Path, work: Path, case: str, steps: int) -> str:
    mode, attn = case.split("-")[:2]
    lines = [
        f"base_model: {model_dir}", "reinit_weights: true", "seed: 1234",
        f"datasets:\n  - path: {data}", f"dataset_prepared_path: {work / f'prepared-{sequence_len(case)}'}",
        f"sequence_len: {sequence_len(case)}", "sample_packing: true", "micro_batch_size: 1", "gradient_accumulation_steps: 1",
        f"max_steps: {steps}", "learning_rate: 1.0e-5", "optimizer: adamw_torch_fused", "lr_scheduler: constant",
        "bfloat16: true" if "pure" in case.split("-") else "bf16: true", "logging_steps: 1", "save_strategy: 'no'",
        f"output_dir: {work / ('out-' + case)}",
        "flex_attention: true" if attn == "flex" else "sdp_attention: true",
    ]
    flags = case.split("-")[2:]
    unknown = [flag for flag in flags if flag not in CASE_FLAGS]
    if unknown:
        raise SystemExit(f"case {case}: unknown flags {unknown}; known: {', '.join(CASE_FLAGS)}")
    lines += [CASE_FLAGS[flag] for flag in flags if CASE_FLAGS[flag]]
    if mode == "lora":
        lines += ["adapter: lora", "lora_r: 16", "lora_alpha: 32", "lora_target_linear: true"]
    return "\n".join(lines) + "\n"


def release_earlier_cases() -> float:
    """Free what earlier cases of this process left on the GPU -> GiB still allocated.

    The peak of a case counts everything allocated when it starts: compiled graphs (which hold their
    model's modules) or a lingering trainer from an earlier case would inflate it. Non-zero means
    the case's peak is not its own; run that case alone (one `--case` per process) to be sure."""
    import gc

    import torch

    gc.collect()
    left = torch.cuda.memory_allocated() / 2**30
    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated() / 2**30
    if left > 0.01:
        print(f"# earlier cases left {left:.2f} GiB allocated; {held:.2f} GiB after resetting the compiler caches")
    return held


def run_case(case: str, model_dir: Path, data: Path, work: Path, warmup: int, steps: int, shape: dict[str, Any],
             lengths: list[int]) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig

    from axolotl.config.environment import Environment
    from axolotl.config.loader import load_config_text
    from axolotl.training.callbacks import StepClock
    from axolotl.training.flops import ModelShape, peak_bf16_flops, training_flops_per_token
    from axolotl.training.sft import train

    env = Environment.detect()
    cfg = load_config_text(config_text(model_dir, data, work, case, warmup + steps), f"{case}.yml", env=env).cfg
    clock = StepClock()
    cuda = torch.cuda.is_available()
    held = 0.0
    if cuda:
        held = release_earlier_cases()
        torch.cuda.reset_peak_memory_stats()
    train(cfg, extra_callbacks=[clock])
    seconds = clock.times[-1] - clock.times[warmup - 1]
    tokens = clock.tokens[-1] - clock.tokens[warmup - 1]
    rate = tokens / seconds
    model_shape = ModelShape.from_config(LlamaConfig(**shape))
    assert model_shape is not None
    peak = peak_bf16_flops()
    mfu = training_flops_per_token(model_shape, lengths) * rate / peak if peak else None
    return {"case": case, "useful_tokens_per_s": round(rate), "mfu": round(mfu, 4) if mfu is not None else None,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "held_before_gib": round(held, 2), "steps": steps,
            "warmup": warmup, "device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="full-sdpa,full-flex,lora-flex",
                        help="comma list of {full,lora}-{sdpa,flex}[-FLAG...]: -gc gradient checkpointing, -compile "
                             "`torch_compile: true`, -cce `chunked_cross_entropy: true`, -cutce the Cut Cross Entropy "
                             "plugin, -liger the Liger plugin (rms_norm, glu, fused linear CE), -lk the LoRA kernels, "
                             "-tiled `tiled_mlp: true`, -offload activation offloading, -pure `bfloat16: true` "
                             "instead of `bf16: true`, -16k 16384-token rows of one document each")
    parser.add_argument("--shape", choices=["1b", "8b"], default="1b", help="Llama-3.2-1B or Llama-3.1-8B shape")
    parser.add_argument("--anchor", type=Path, help="path of ../shared/bench/anchor_sft.py: run these reference "
                                                     "cases in the same call and print the ratios")
    parser.add_argument("--anchor-case", default="full-flex-packed-amp,trl-flex,lora-flex-packed-amp,trl-flex-lora")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, help="append JSON lines here")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run of the script")
    args = parser.parse_args()
    import peft
    import torch
    import transformers

    shape = TINY if args.tiny else LLAMA_8B if args.shape == "8b" else LLAMA_1B
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
          f"device {device}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = write_model_dir(work / "model", shape)
        # Liger replaces transformers functions for the rest of the process: its cases run last
        cases = sorted(args.case.split(","), key=lambda case: "liger" in case.split("-"))
        data, lengths = write_documents(work / "docs.parquet", 4096 * (args.warmup + args.steps + 10),
                                        shape["vocab_size"], 1234)
        if any(sequence_len(case) == LONG for case in cases):
            long_data, long_lengths = write_documents(work / "long.parquet", LONG * (args.warmup + args.steps + 2),
                                                      shape["vocab_size"], 1234, fixed_length=LONG)
        print(f"{'case':<24} {'tokens/s':>10} {'MFU':>7} {'peak GiB':>9} {'held before':>11}")
        ours = []
        for case in cases:
            long = sequence_len(case) == LONG
            result = run_case(case, model_dir, long_data if long else data, work, args.warmup, args.steps, shape,
                              long_lengths if long else lengths)
            peak = f"{result['peak_gib']:>9.2f}" if result["peak_gib"] is not None else f"{'-':>9}"
            mfu = f"{result['mfu']:>7.1%}" if result["mfu"] is not None else f"{'-':>7}"
            print(f"{case:<24} {result['useful_tokens_per_s']:>10,} {mfu} {peak} {result['held_before_gib']:>11.2f}",
                  flush=True)
            ours.append(result)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
    if args.anchor:
        compare(ours, run_anchor(args), args)


def run_anchor(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The reference paths (plain loop, TRL SFTTrainer) on the same workload, in this call."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "anchor.jsonl"
        command = [sys.executable, str(args.anchor), "--case", args.anchor_case, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--out", str(out)]
        if args.shape != "1b":
            command += ["--shape", args.shape]
        if args.tiny:
            command.append("--tiny")
        subprocess.run(command, check=True)
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def compare(ours: list[dict[str, Any]], anchor: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Ours next to each reference case of the same mode (full or LoRA), with the ratio."""
    references = [r for r in anchor if "tok_s_useful" in r]
    if args.out:
        with args.out.open("a") as handle:
            handle.writelines(json.dumps({"anchor": reference}) + "\n" for reference in references)
    print(f"\n{'ours':<24} {'tokens/s':>9} {'GiB':>6}   {'reference':<24} {'tokens/s':>9} {'GiB':>6} {'ratio':>6}")
    for result in ours:
        mode = result["case"].split("-")[0]
        for reference in references:
            lora = reference["case"].startswith("lora") or reference["case"].endswith("-lora")
            if lora != (mode == "lora"):
                continue
            ratio = result["useful_tokens_per_s"] / reference["tok_s_useful"]
            print(f"{result['case']:<24} {result['useful_tokens_per_s']:>9,} {result['peak_gib'] or 0:>6.1f}   "
                  f"{reference['case']:<24} {round(reference['tok_s_useful']):>9,} "
                  f"{reference.get('peak_gib_steady') or 0:>6.1f} {ratio:>5.2f}x")


if __name__ == "__main__":
    main()
