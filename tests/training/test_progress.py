"""Console progress, throughput logging and the FLOPs count behind MFU.

Pinned: the console line's fields and format (tokens/s, ETA, MFU only with a known peak), the
throughput keys that reach log_history / metrics.json under `include_tkps` and
`include_tokens_per_second`, that transformers' own bar and log dicts are not printed as well,
and the FLOPs formula against a count done by hand for a tiny config.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from transformers import LlamaConfig, PrinterCallback, ProgressCallback, TrainerState

from axolotl.testing import alpaca_rows, write_rows
from axolotl.testing.configs import load
from axolotl.training.flops import (
    ModelShape,
    causal_pairs,
    peak_bf16_flops,
    training_flops,
    training_flops_per_token,
)
from axolotl.training.progress import Interval, TrainingProgress, format_duration, format_train_line


def make_cfg(model_dir: Path, tmp: Path, name: str, rows: int = 16, extra: str = "") -> Any:
    """A small SFT config on alpaca rows; keys in `extra` (YAML) replace the defaults."""
    data = write_rows(alpaca_rows(rows), tmp / f"data-{name}", "jsonl")
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3, "datasets": [{"path": str(data), "type": "alpaca"}],
        "dataset_prepared_path": str(tmp / f"prep-{name}"), "output_dir": str(tmp / name), "sequence_len": 128,
        "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1,
    }
    keys.update(yaml.safe_load(extra) or {})
    return load(yaml.safe_dump(keys)).cfg

# --------------------------------------------------------------------------------------------
# FLOPs and peaks
# --------------------------------------------------------------------------------------------

TINY = dict(vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=4)


def test_flops_match_a_hand_count_for_a_tiny_config() -> None:
    shape = ModelShape.from_config(LlamaConfig(**TINY))
    assert shape is not None
    # Per layer: q 8x(2*4)=64, k 8x4=32, v 32, o 64, gate/up/down 3 x 8x16 = 384 -> 576; 2 layers
    # 1152, output head 8x100 = 800 (the input-embedding lookup is no product): N = 1952.
    assert shape.matmul_params == 1952
    # Documents of 3 and 2 tokens: causal pairs 1+2+3 + 1+2 = 9. Attention per pair, forward:
    # QK^T 2 x heads x head_dim = 16 and AV 16 per layer; x3 with the backward, x2 layers = 192.
    assert causal_pairs([3, 2]) == 9
    assert shape.attention_flops_per_pair == 192
    expected = 6 * 1952 * 5 + 192 * 9
    assert training_flops(shape, tokens=5, pairs=9) == expected
    assert training_flops_per_token(shape, [3, 2]) == pytest.approx(expected / 5)


def test_flops_shape_defaults_and_mixture_of_experts() -> None:
    dense = ModelShape.from_config(SimpleNamespace(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                   vocab_size=10, intermediate_size=16))
    assert dense is not None and (dense.num_kv_heads, dense.head_dim) == (2, 4)  # MHA, hidden / heads
    moe = ModelShape.from_config(SimpleNamespace(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                 vocab_size=10, intermediate_size=64, num_experts_per_tok=2,
                                                 moe_intermediate_size=16, shared_expert_intermediate_size=8))
    assert moe is not None and moe.intermediate_size == 2 * 16 + 8  # active experts only
    assert ModelShape.from_config(SimpleNamespace(hidden_size=8)) is None


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA GH200 480GB", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA A10", 125.0),
    ("NVIDIA GeForce RTX 4090", 165.2), ("NVIDIA B200", 2250.0),
])
def test_peak_lookup_by_device_name(name: str, tflops: float) -> None:
    assert peak_bf16_flops(name) == pytest.approx(tflops * 1e12)


def test_unknown_devices_and_cpu_have_no_peak() -> None:
    assert peak_bf16_flops("NVIDIA A10G") is None  # not in the table: no guess
    assert peak_bf16_flops("AMD Instinct MI300X") is None
    if not torch.cuda.is_available():
        assert peak_bf16_flops() is None


# --------------------------------------------------------------------------------------------
# the console line
# --------------------------------------------------------------------------------------------

LOGS = {"loss": 2.34567, "grad_norm": 0.81234, "learning_rate": 1e-3, "epoch": 0.3, "num_input_tokens_seen": 999,
        "train_runtime": 1.0, "train_tokens_per_second": 5.0}


def test_train_line_format() -> None:
    interval = Interval(tokens_per_second=12345.4, tokens_per_second_per_gpu=12345.4, mfu=0.4123)
    line = format_train_line(12, 40, LOGS, interval, eta_seconds=83.4)
    assert line == ("step 12/40 | epoch 0.30 | loss 2.3457 | lr 1.000e-03 | grad_norm 0.8123 | 12,345 tok/s | "
                    "MFU 41.2% | ETA 0:01:23")


def test_train_line_without_mfu_or_eta_and_with_several_gpus() -> None:
    interval = Interval(tokens_per_second=8000.0, tokens_per_second_per_gpu=2000.0, mfu=None)
    line = format_train_line(1, 10, {"loss": 1.0, "learning_rate": 0.5}, interval, eta_seconds=None, world_size=4)
    assert line == "step 1/10 | loss 1.0000 | lr 5.000e-01 | 8,000 tok/s (2,000/gpu)"
    assert "MFU" not in line and "ETA" not in line


def test_durations() -> None:
    assert [format_duration(s) for s in (0, 59.6, 3600, 90061)] == ["0:00:00", "0:01:00", "1:00:00", "1d 1:01:01"]


def test_measure_counts_tokens_and_mfu_from_the_batches() -> None:
    """The pre-hook reads the documents of a packed batch (positions restart per document, the
    padding segment is not counted) and MFU = model FLOPs / seconds / peak."""
    model = torch.nn.Linear(2, 2)
    progress = TrainingProgress(peak_flops=1e9, stream=io.StringIO(), bar=False)
    args = SimpleNamespace(device=torch.device("cpu"), disable_tqdm=True, world_size=1)
    state = TrainerState(max_steps=10)
    model.config = LlamaConfig(**TINY)
    progress.on_train_begin(args, state, None, model=model, processing_class=SimpleNamespace(pad_token_id=0))
    ids = torch.tensor([[5, 6, 7, 8, 9, 0]])  # documents of 3 and 2 tokens, then one pad
    positions = torch.tensor([[0, 1, 2, 0, 1, 0]])
    progress._count_batch(model, (), {"input_ids": ids, "position_ids": positions})
    state.num_input_tokens_seen = 5
    progress._mark = (progress._mark[0] - 2.0, 0)  # pretend the interval lasted 2 s
    interval = progress.measure(state)
    assert interval is not None
    assert interval.tokens_per_second == pytest.approx(2.5, rel=0.01)
    shape = ModelShape.from_config(model.config)
    assert interval.mfu == pytest.approx(training_flops(shape, 5, 9) / 2.0 / 1e9, rel=0.01)
    progress.on_train_end(args, state, None)


# --------------------------------------------------------------------------------------------
# in a real run
# --------------------------------------------------------------------------------------------

def _train_printing(cfg: Any, monkeypatch: pytest.MonkeyPatch, peak_flops: float | None = None) -> tuple[str, Any]:
    """Train with the progress output captured (and, given `peak_flops`, a pretend accelerator
    peak, so MFU is measured on CPU); returns (console text, result)."""
    from axolotl.training import sft

    stream = io.StringIO()
    made = sft._callbacks

    def callbacks(cfg: Any) -> Any:
        found, stopper, watchdog = made(cfg)
        for callback in found:
            if isinstance(callback, TrainingProgress):
                callback.stream = stream
                if peak_flops is not None:
                    callback.peak_flops_setting = peak_flops
        return found, stopper, watchdog

    monkeypatch.setattr(sft, "_callbacks", callbacks)
    result = sft.train(cfg)
    return stream.getvalue(), result


def test_train_prints_one_line_per_log_and_logs_throughput(tiny_llama_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tiny_llama_dir, tmp_path, "progress", rows=16,
                   extra="max_steps: 4\nlogging_steps: 2\nmicro_batch_size: 2\nsample_packing: true\n"
                         "include_tokens_per_second: true\n")
    text, result = _train_printing(cfg, monkeypatch)
    lines = text.strip().splitlines()
    pattern = (r"step (\d+)/4 \| epoch [\d.]+ \| loss [\d.]+ \| lr [\d.e+-]+ \| grad_norm [\d.e+-]+ \| "
               r"[\d,]+ tok/s \| ETA \d+:\d\d:\d\d")
    steps = [int(m.group(1)) for line in lines if (m := re.fullmatch(pattern, line))]
    assert steps == [2, 4], text
    assert "MFU" not in text, "no MFU on CPU"
    assert lines[-1].startswith("done: 4 steps in ") and "train_tokens_per_second" in lines[-1]
    captured = capsys.readouterr()
    assert "{'loss'" not in captured.out + captured.err, "transformers' log printer must be replaced"
    metrics = json.loads((Path(cfg.output_dir) / "metrics.json").read_text())
    history = metrics["train_loss_history"]
    assert [entry["step"] for entry in history] == [2, 4]
    assert all(entry["tokens_per_second_per_gpu"] > 0 and "mfu" not in entry for entry in history)
    assert metrics["final"]["train_tokens_per_second"] > 0
    assert (Path(cfg.output_dir) / "training_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_include_tkps_false_keeps_throughput_out_of_the_logs(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from axolotl.training.sft import train

    cfg = make_cfg(tiny_llama_dir, tmp_path, "quiet", rows=8, extra="max_steps: 2\ninclude_tkps: false\n")
    metrics = train(cfg).metrics
    assert all("tokens_per_second_per_gpu" not in entry for entry in metrics["train_loss_history"])
    assert "train_tokens_per_second" not in metrics["final"]  # include_tokens_per_second is off


def test_trainer_keeps_a_single_progress_display(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, TrainingArguments

    from axolotl.training.sft import AxolotlTrainer

    cfg = make_cfg(tiny_llama_dir, tmp_path, "single", rows=4)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to="none")
    with_ours = AxolotlTrainer(model=model, args=args, callbacks=[TrainingProgress()], axolotl_cfg=cfg)
    kinds = [type(c) for c in with_ours.callback_handler.callbacks]
    assert TrainingProgress in kinds and ProgressCallback not in kinds and PrinterCallback not in kinds
    stock = AxolotlTrainer(model=model, args=args, axolotl_cfg=cfg)  # e.g. `evaluate`: transformers' bar stays
    assert stock.progress is None
    assert ProgressCallback in [type(c) for c in stock.callback_handler.callbacks]


def test_mfu_in_a_packed_lora_run_with_a_known_peak(tiny_llama_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With a peak (here a pretend 1 GFLOP/s), the forward hook sees the adapter model's packed
    batches and MFU is printed and logged; it is the FLOPs count over the interval's time."""
    cfg = make_cfg(tiny_llama_dir, tmp_path, "mfu", rows=16,
                   extra="max_steps: 2\nsample_packing: true\nmicro_batch_size: 2\nadapter: lora\nlora_r: 4\n"
                         "lora_alpha: 8\nlora_target_linear: true\n")
    text, result = _train_printing(cfg, monkeypatch, peak_flops=1e9)
    lines = [line for line in text.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and all(re.search(r" \| MFU \d+\.\d% \| ETA ", line) for line in lines), text
    history = result.metrics["train_loss_history"]
    assert all(0 < entry["mfu"] for entry in history)
    # MFU x peak / tokens/s = FLOPs per token, which lies between 6N (no attention) and 6N plus
    # attention over a full sequence_len context.
    shape = ModelShape.from_config(LlamaConfig.from_pretrained(tiny_llama_dir))
    for entry in history:
        per_token = entry["mfu"] * 1e9 / entry["tokens_per_second_per_gpu"]
        low, high = 6 * shape.matmul_params, 6 * shape.matmul_params + shape.attention_flops_per_pair * 128
        assert low * 0.98 < per_token < high, (per_token, low, high)
