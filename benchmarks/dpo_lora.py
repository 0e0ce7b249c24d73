"""DPO with LoRA end to end on one GPU: ours (`axolotl train`'s path) next to plain TRL.

Workload: a Llama-3.2-1B-shaped model (random init, bf16 autocast), LoRA r=16 on every linear
layer, the reference model being the same weights with the adapter switched off. A separable
preference set: each prompt is ~`--prompt-words` words of filler text and a question; the chosen
and rejected answers share a long body and differ only in their last sentence ("blue" vs
"green"). Both implementations see the same rendered ChatML strings, batch size, learning rate and
steps. Reported per implementation: pairs/s and tokens/s after `--warmup` steps, peak GPU memory,
and (ours) the held-out reward accuracy before and after training.

    python benchmarks/dpo_lora.py --steps 40 --warmup 5          # ours and TRL, each in its own process
    python benchmarks/dpo_lora.py --tiny --steps 4 --warmup 1    # CPU smoke run of the script itself
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LLAMA_1B = dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=8192,
                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=True, hidden_act="silu")
TINY = dict(LLAMA_1B, vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16)


def write_model_dir(path: Path, shape: dict[str, Any]) -> Path:
    """The test suite's byte-level BPE tokenizer (with its ChatML template) and a Llama config."""
    from transformers import AutoTokenizer, LlamaConfig

    from axolotl.testing.tiny_tokenizer import build_tiny_tokenizer

    build_tiny_tokenizer(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    shape = dict(shape, vocab_size=max(shape["vocab_size"], len(tokenizer)))
    LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id).save_pretrained(path)
    return path


def preference_rows(count: int, prompt_words: int, seed: int) -> list[dict[str, str]]:
    from axolotl.testing.tiny_tokenizer import tiny_corpus

    rng = random.Random(seed)
    words = " ".join(tiny_corpus()).split()
    rows = []
    for i in range(count):
        start = rng.randrange(len(words) - prompt_words)
        filler = " ".join(words[start:start + prompt_words])
        body = " ".join(words[(start + 7) % (len(words) - 80):][:80])
        rows.append({"prompt": f"{filler}\nQuestion {i}: what colour is the sky on a clear day?",
                     "chosen": f"{body} So the sky is blue.", "rejected": f"{body} So the sky is green."})
    return rows


def render_chatml(row: dict[str, str]) -> dict[str, str]:
    """What `type: chatml.prompt_pairs` renders (no system prompt), for the plain TRL arm."""
    return {"prompt": f"<|im_start|>user\n{row['prompt']}<|im_end|>\n<|im_start|>assistant\n",
            "chosen": f"{row['chosen']}<|im_end|>", "rejected": f"{row['rejected']}<|im_end|>"}


def run_ours(args: argparse.Namespace, model_dir: Path, data: Path, work: Path) -> dict[str, Any]:
    import torch

    from axolotl.config.environment import Environment
    from axolotl.config.loader import load_config_text
    from axolotl.training.callbacks import StepClock
    from axolotl.training.sft import train

    text = "\n".join([
        f"base_model: {model_dir}", "reinit_weights: true", "seed: 7", "rl: dpo", "rl_beta: 0.1",
        f"datasets:\n  - path: {data}\n    type: chatml.prompt_pairs", f"dataset_prepared_path: {work / 'prepared'}",
        f"val_set_size: {args.eval_pairs}", "eval_on_start: true", "eval_strategy: steps",
        f"eval_steps: {args.warmup + args.steps}",
        "sequence_len: 1024", f"micro_batch_size: {args.batch}", "gradient_accumulation_steps: 1",
        f"max_steps: {args.warmup + args.steps}", f"learning_rate: {args.lr}", "optimizer: adamw_torch_fused"
        if torch.cuda.is_available() else "optimizer: adamw_torch", "lr_scheduler: constant",
        "bf16: auto", "sdp_attention: true", "logging_steps: 5", "save_strategy: 'no'",
        "adapter: lora", "lora_r: 16", "lora_alpha: 32", "lora_target_linear: true", "dataset_num_proc: 2",
        f"gradient_checkpointing: {str(args.gc).lower()}",
        f"output_dir: {work / 'out-ours'}",
    ]) + "\n"
    cfg = load_config_text(text, "dpo_lora.yml", env=Environment.detect()).cfg
    clock = StepClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train(cfg, extra_callbacks=[clock])
    metrics = json.loads((work / "out-ours" / "metrics.json").read_text())
    history = metrics.get("eval_history", [])
    return {"clock": clock.times, "eval_start": history[0] if history else None,
            "eval_end": history[-1] if len(history) > 1 else None,
            "train_last": (metrics.get("train_loss_history") or [None])[-1]}


def run_trl(args: argparse.Namespace, model_dir: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig
    from trl import DPOConfig, DPOTrainer

    from axolotl.training.callbacks import StepClock

    torch.manual_seed(7)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig.from_pretrained(model_dir), dtype=torch.float32)
    dataset = Dataset.from_list([render_chatml(r) for r in rows[args.eval_pairs:]])
    config = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch, max_length=1024,
                       max_steps=args.warmup + args.steps, learning_rate=args.lr, lr_scheduler_type="constant",
                       beta=0.1, bf16=torch.cuda.is_available(), logging_steps=5, save_strategy="no", report_to=[],
                       optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch", seed=7,
                       dataloader_num_workers=0, gradient_checkpointing=args.gc)
    peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    clock = StepClock()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[clock])
    trainer.train()
    logged = [e for e in trainer.state.log_history if "rewards/accuracies" in e]
    return {"clock": clock.times, "train_last": logged[-1] if logged else None}


def tokens_per_pair(model_dir: Path, rows: list[dict[str, str]]) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    total = 0
    for row in map(render_chatml, rows):
        prompt = len(tokenizer(row["prompt"])["input_ids"])
        total += 2 * prompt + sum(len(tokenizer(row[k], add_special_tokens=False)["input_ids"]) for k in ("chosen", "rejected"))
    return total / len(rows)


def child(args: argparse.Namespace) -> None:
    import torch

    work = Path(args.work)
    model_dir = work / "model"
    rows = json.loads((work / "rows.json").read_text())
    result = run_ours(args, model_dir, work / "pairs.jsonl", work) if args.impl == "ours" else \
        run_trl(args, model_dir, rows)
    times = result.pop("clock")
    seconds = times[-1] - times[args.warmup - 1]
    pairs = args.steps * args.batch
    result.update(impl=args.impl, pairs_per_s=round(pairs / seconds, 2),
                  tokens_per_s=round(pairs * tokens_per_pair(model_dir, rows[:64]) / seconds),
                  peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None)
    with open(work / "results.jsonl", "a") as handle:
        handle.write(json.dumps(result, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--prompt-words", type=int, default=200)
    parser.add_argument("--eval-pairs", type=int, default=64)
    parser.add_argument("--impl", default="ours,trl", help="comma list of ours, trl")
    parser.add_argument("--gc", action="store_true", help="gradient checkpointing in both arms (TRL's own "
                        "default is on; it is set explicitly either way so the arms match)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model: checks the script on CPU")
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        return child(args)
    import torch

    from axolotl.testing import write_rows

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_model_dir(work / "model", TINY if args.tiny else LLAMA_1B)
        rows = preference_rows(args.eval_pairs + (args.warmup + args.steps) * args.batch + 64, args.prompt_words, 0)
        (work / "rows.json").write_text(json.dumps(rows))
        write_rows(rows, work / "pairs", "jsonl")
        for impl in args.impl.split(","):
            command = [sys.executable, __file__, "--work", tmp, "--impl", impl] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("work", "impl", "tiny", "gc") and v is not None] + (["--gc"] if args.gc else [])
            subprocess.run(command, check=True)
        results = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines()]
    import transformers
    import trl

    print(f"\ndevice: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}; batch {args.batch} pairs, "
          f"{args.steps} timed steps after {args.warmup}; gradient checkpointing {'on' if args.gc else 'off'}")
    print(f"{'impl':6} {'pairs/s':>8} {'tokens/s':>9} {'peak GiB':>9}  train acc (last log)  eval acc start -> end")
    for r in results:
        last = r.get("train_last") or {}
        start, end = r.get("eval_start") or {}, r.get("eval_end") or {}
        print(f"{r['impl']:6} {r['pairs_per_s']:8.2f} {r['tokens_per_s']:9,} {str(r['peak_gib']):>9}  "
              f"{last.get('rewards/accuracies', float('nan')):20.3f}  "
              f"{start.get('eval_rewards/accuracies', float('nan')):.3f} -> {end.get('eval_rewards/accuracies', float('nan')):.3f}")
    if len(results) == 2:
        print(f"ours / trl pairs/s: {results[0]['pairs_per_s'] / results[1]['pairs_per_s']:.2f}x")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
