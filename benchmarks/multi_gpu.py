"""Multi-GPU training through the real `train` path: throughput, scaling efficiency, memory and the
loss curve of each engine against one GPU with the same global batch; then a sharded FSDP
checkpoint merged with `axolotl merge-sharded-fsdp-weights` and loaded.

Workload: a Llama-3.2-1B-shaped model (random weights, written once so every case starts from the
same ones), documents of log-uniform 64-2048 random tokens packed into 4096-token rows, `bf16: true`,
sdpa attention, AdamW (fused), lr 1e-5 constant, `--warmup` + `--steps` optimizer steps of 2 rows:

| case   | processes | micro batch x accumulation | engine                                      |
|--------|-----------|----------------------------|---------------------------------------------|
| single | 1         | 1 x 2                      | -                                           |
| ddp    | 2         | 1 x 1                      | DDP                                         |
| fsdp   | 2         | 1 x 1                      | FSDP2 full shard, sharded checkpoint at the end |
| fsdp-bf16 | 2      | 1 x 1                      | FSDP2 with `mixed_precision_policy: bf16` (accelerate's policy: bf16 reduce and outputs) |
| zero3  | 2         | 1 x 1                      | DeepSpeed ZeRO-3 (deepspeed_configs/zero3_bf16.json) |

Scaling efficiency = 2-GPU tokens/s / (2 x 1-GPU tokens/s). Loss: the largest |difference| over the
steps against `single`. DDP keeps `single`'s bf16 weights, so its curve should match to float
noise; FSDP2 trains fp32 master weights (accelerate upcasts them under mixed precision) and ZeRO-3
keeps fp32 optimizer copies, so theirs drift by bf16 rounding.

    python benchmarks/multi_gpu.py                       # 2 GPUs: single, ddp, fsdp, zero3 + merge
    python benchmarks/multi_gpu.py --tiny                # CPU smoke run (single, ddp on gloo)

Each case runs as its own process group (`torchrun --standalone`) running this file with
`--worker`; rank 0 writes the case's result as JSON.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize`: keep this folder off sys.path.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import argparse
import importlib.util
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(HERE).parent
CASES = {"single": 1, "ddp": 2, "fsdp": 2, "fsdp-bf16": 2, "zero3": 2}
"""case -> processes."""
NEEDS_CUDA = ("fsdp", "fsdp-bf16", "zero3")


def _sft_throughput() -> Any:
    """benchmarks/sft_throughput.py (model shapes, model folder and documents writers)."""
    spec = importlib.util.spec_from_file_location("sft_throughput", Path(HERE) / "sft_throughput.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def write_weights(model_dir: Path, seed: int) -> None:
    """Random weights saved once (bf16), so every case and every engine starts from the same model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # a 1B init takes minutes on the CPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(model_dir)


def config_text(case: str, model_dir: Path, data: Path, work: Path, steps: int, tiny: bool) -> str:
    processes = CASES[case]
    lines = [
        f"base_model: {model_dir}", "seed: 1234", f"datasets:\n  - path: {data}",
        f"dataset_prepared_path: {work / 'prepared'}", f"output_dir: {work / ('out-' + case)}",
        f"sequence_len: {2048 if tiny else 4096}", "sample_packing: true", "micro_batch_size: 1",
        f"gradient_accumulation_steps: {2 // processes}", f"max_steps: {steps}", "learning_rate: 1.0e-5",
        f"optimizer: {'adamw_torch' if tiny else 'adamw_torch_fused'}", "lr_scheduler: constant", "logging_steps: 1",
        "sdp_attention: true", "torch_compile: false", "dataset_num_proc: 4",
    ]
    lines.append("bf16: false" if tiny else "bf16: true")
    lines.append("save_strategy: 'no'" if case != "fsdp" else f"save_strategy: steps\nsave_steps: {steps}")
    if case == "ddp":
        lines.append("ddp_find_unused_parameters: false")
    if case == "fsdp":
        lines += ["fsdp_version: 2", "fsdp_config:", "  reshard_after_forward: true",
                  "  state_dict_type: SHARDED_STATE_DICT"]
    if case == "fsdp-bf16":
        lines += ["fsdp_version: 2", "fsdp_config:", "  reshard_after_forward: true", "  mixed_precision_policy: bf16"]
    if case == "zero3":
        lines.append(f"deepspeed: {REPO / 'deepspeed_configs' / 'zero3_bf16.json'}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# one case (inside the launched processes)
# --------------------------------------------------------------------------------------------

def worker(config: Path, result_path: Path, warmup: int) -> None:
    import torch

    from axolotl.config.environment import Environment
    from axolotl.config.loader import load_config_text
    from axolotl.training.callbacks import StepClock
    from axolotl.training.sft import train

    cfg = load_config_text(config.read_text(), str(config), env=Environment.detect()).cfg
    clock = StepClock()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train(cfg, extra_callbacks=[clock])
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    peaks = [peak]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        peaks = [0.0] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(peaks, peak)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    seconds = clock.times[-1] - clock.times[warmup - 1]
    tokens = clock.tokens[-1] - clock.tokens[warmup - 1]
    history = result.metrics["train_loss_history"]
    result_path.write_text(json.dumps({
        "tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens,
        "peak_gib_per_gpu": [round(p, 2) for p in peaks], "losses": [e["loss"] for e in history],
        "grad_norms": [e.get("grad_norm") for e in history], "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }))


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------

def run_case(case: str, config: Path, work: Path, warmup: int, log: Path) -> dict[str, Any] | str:
    result = work / f"result-{case}.json"
    worker_args = [str(Path(__file__).resolve()), "--worker", str(config), "--result", str(result),
                   "--warmup", str(warmup)]
    processes = CASES[case]
    if processes == 1:
        command = [sys.executable, *worker_args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), *worker_args]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    if processes == 1:  # one process sees one GPU (with more, transformers would use DataParallel)
        env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    with log.open("a") as handle:
        handle.write(f"\n===== {case}: {' '.join(command)}\n")
        handle.flush()
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0 or not result.is_file():
        return f"failed (exit {done.returncode}); see {log}"
    return json.loads(result.read_text())


def merge_and_load(config: Path, work: Path, log: Path) -> str:
    """`axolotl merge-sharded-fsdp-weights` on the FSDP case's sharded checkpoint (on the CPU), then
    the merged model loaded and compared with the model the same run published (full state dict)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    with log.open("a") as handle:
        handle.write("\n===== merge-sharded-fsdp-weights\n")
        handle.flush()
        done = subprocess.run([sys.executable, "-m", "axolotl.cli.main", "merge-sharded-fsdp-weights", str(config),
                               "--force"], stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        return f"merge failed (exit {done.returncode}); see {log}"
    seconds = time.perf_counter() - started
    merged_dir = work / "out-fsdp" / "merged"
    model = AutoModelForCausalLM.from_pretrained(merged_dir)
    merged = model.state_dict()
    published: dict[str, Any] = {}
    for file in sorted((work / "out-fsdp").glob("model*.safetensors")):
        published.update(load_file(str(file)))
    common = [key for key in published if key in merged]
    diff = max((merged[key].float() - published[key].float()).abs().max().item() for key in common)
    return (f"merged {merged_dir} in {seconds:.0f}s; loads as {type(model).__name__} "
            f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params); max |merged - published| over "
            f"{len(common)} tensors = {diff:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="single,ddp,fsdp,zero3", help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run of the script (figures meaningless)")
    parser.add_argument("--work", type=Path, help="keep the work folder here (default: a temporary one); a "
                                                   "later call with the same folder reuses the model, data and "
                                                   "the `single` result, so the cases can run in separate calls")
    parser.add_argument("--out", type=Path, help="append the results as JSON lines here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.result, args.warmup)
        return
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        drive(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            drive(args, Path(tmp))


def drive(args: argparse.Namespace, work: Path) -> None:
    import accelerate
    import torch
    import transformers

    sft = _sft_throughput()
    shape = sft.TINY if args.tiny else sft.LLAMA_1B
    cuda = torch.cuda.device_count()
    cases = [c for c in args.case.split(",") if c]
    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, accelerate "
          f"{accelerate.__version__}, deepspeed {_version('deepspeed')}, {cuda} x "
          f"{torch.cuda.get_device_name(0) if cuda else 'cpu'}, {time.strftime('%Y-%m-%d')}")
    steps = args.warmup + args.steps
    row_tokens = 2048 if args.tiny else 4096
    model_dir, data = work / "model", work / "docs.parquet"
    if not (model_dir / "model.safetensors").is_file() or not data.is_file():  # a --work folder is reused
        sft.write_model_dir(model_dir, shape)
        write_weights(model_dir, seed=1234)
        sft.write_documents(data, row_tokens * 2 * (steps + 10), shape["vocab_size"], 1234)
    log = work / "runs.log"
    results: dict[str, Any] = {}
    if "single" not in cases and (work / "result-single.json").is_file():  # the baseline of an earlier call
        results["single"] = json.loads((work / "result-single.json").read_text())
    for case in cases:
        if case in NEEDS_CUDA and cuda < 2:
            results[case] = "skipped: needs 2 CUDA GPUs"
            continue
        if case == "zero3" and importlib.util.find_spec("deepspeed") is None:
            results[case] = "skipped: deepspeed is not installed (pip install 'axolotl[deepspeed]')"
            continue
        config = work / f"{case}.yml"
        config.write_text(config_text(case, model_dir, data, work, steps, args.tiny))
        results[case] = run_case(case, config, work, args.warmup, log)
        print(f"{case}: done", flush=True)
    report(results, args)
    if isinstance(results.get("fsdp"), dict):
        print(merge_and_load(work / "fsdp.yml", work, log))
    elif args.tiny:
        print("merge: skipped (the FSDP case needs 2 CUDA GPUs)")


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results.get("single")
    base_rate = base["tokens_per_s"] if isinstance(base, dict) else None
    print(f"\n{'case':<9} {'GPUs':>4} {'tokens/s':>10} {'scaling':>8} {'peak GiB/GPU':>13} {'max |dloss|':>11} "
          f"{'dloss step 1':>12} {'final loss':>10}")
    for case, result in results.items():
        if not isinstance(result, dict):
            print(f"{case:<9} {result}")
            continue
        scaling = result["tokens_per_s"] / (result["processes"] * base_rate) if base_rate and case != "single" else None
        diffs = [abs(a - b) for a, b in zip(result["losses"], base["losses"])] if isinstance(base, dict) else []
        print(f"{case:<9} {result['processes']:>4} {result['tokens_per_s']:>10,.0f} "
              f"{f'{scaling:.1%}' if scaling is not None else '-':>8} {max(result['peak_gib_per_gpu']):>13.2f} "
              f"{f'{max(diffs):.2e}' if diffs else '-':>11} {f'{diffs[0]:.2e}' if diffs else '-':>12} "
              f"{result['losses'][-1]:>10.4f}")
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps({"case": case, **result, "scaling_efficiency": scaling,
                                         "max_abs_loss_diff_vs_single": max(diffs) if diffs else None}) + "\n")


def _version(package: str) -> str:
    if importlib.util.find_spec(package) is None:
        return "not installed"
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
