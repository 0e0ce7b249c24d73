"""Activation offloading (`models/offload.py`): the same loss and gradients as the plain run, the
saved activations really leave (and come back), weights never do; which config values ask for it.
Training through `axolotl train` with it: tests/training/test_memory_options.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from axolotl.models.adapters import apply_adapter
from axolotl.models.model import load_model
from axolotl.models.offload import ActivationOffload, _Offloaded, offload_mode
from axolotl.models.tokenizer import load_tokenizer
from axolotl.testing.configs import load

BASE = "learning_rate: 1e-4\ngradient_checkpointing: true\n"
LORA = "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n"


def _model(model_dir: Path, extra: str = "") -> Any:
    cfg = load(f"base_model: {model_dir}\n{BASE}{extra}").cfg
    model = apply_adapter(cfg, load_model(cfg, load_tokenizer(cfg)))
    model.train()
    return model


def _step(model: Any, ids: torch.Tensor, context: Any = None) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward/backward (under `context`): the loss and every gradient."""
    model.zero_grad(set_to_none=True)
    if context is None:
        loss = model(input_ids=ids, labels=ids).loss
    else:
        with context:
            loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


class _Recording(ActivationOffload):
    """Keeps what each pack returned, to look at where the saved tensors went."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packed: list[Any] = []

    def _pack(self, tensor: torch.Tensor) -> Any:
        packed = super()._pack(tensor)
        self.packed.append(packed)
        return packed


@pytest.mark.parametrize("adapter", ["", LORA], ids=["full", "lora"])
@pytest.mark.parametrize("mode", ["stream", "sync"])
def test_offloaded_step_matches_plain_and_moves_activations(tiny_llama_dir: Path, adapter: str, mode: str) -> None:
    model = _model(tiny_llama_dir, adapter)
    ids = torch.randint(0, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    plain_loss, plain_grads = _step(model, ids)
    # On CPU the "host copy" is a fresh CPU buffer (`include_cpu`): the full round trip runs.
    offload = _Recording(model, mode, min_bytes=0, include_cpu=True)
    loss, grads = _step(model, ids, offload)

    assert loss == plain_loss
    assert grads.keys() == plain_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=0, msg=name)

    moved = [p for p in offload.packed if isinstance(p, _Offloaded)]
    assert offload.stats.offloaded == len(moved) == offload.stats.restored > 0
    assert all(p.host.device.type == "cpu" for p in moved)
    # Checkpointed: each decoder layer's input (batch x seq x hidden) waits on the host.
    hidden = (2, 24, model.config.hidden_size)
    layers = model.config.num_hidden_layers
    assert sum(tuple(p.host.shape) == hidden for p in moved) >= layers
    # Weights (and views of them, like the transposed head) are never copied.
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = [p for p in offload.packed if not isinstance(p, _Offloaded)]
    assert all(t.untyped_storage().data_ptr() in weights or t.numel() == 0 for t in kept)
    assert not any(p.host.untyped_storage().data_ptr() in weights for p in moved)


def test_cpu_tensors_stay_put_by_default(tiny_llama_dir: Path) -> None:
    """Without an accelerator there is nowhere to offload from: nothing is copied."""
    model = _model(tiny_llama_dir)
    offload = ActivationOffload(model)
    _step(model, torch.randint(0, 200, (2, 24)), offload)
    assert offload.stats.saved > 0 and offload.stats.offloaded == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["stream", "sync"])
def test_cuda_activations_go_to_pinned_host_memory(tiny_llama_dir: Path, mode: str) -> None:
    model = _model(tiny_llama_dir).cuda()
    ids = torch.randint(0, 200, (4, 64), generator=torch.Generator().manual_seed(0)).cuda()
    plain_loss, plain_grads = _step(model, ids)
    offload = _Recording(model, mode)
    loss, grads = _step(model, ids, offload)
    torch.cuda.synchronize()

    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], msg=name)
    moved = [p for p in offload.packed if isinstance(p, _Offloaded)]
    assert len(moved) == offload.stats.restored > 0
    assert all(p.host.device.type == "cpu" and p.host.is_pinned() and p.device.type == "cuda" for p in moved)
    assert all(not isinstance(p, _Offloaded) for p in offload.packed if isinstance(p, torch.nn.Parameter))


# ------------------------------------------------------------------------------------------
# config wiring
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "mode"), [
    ("", None),
    ("activation_offloading: true\n", "stream"),
    ("activation_offloading: legacy\n", "sync"),
    ("offload_activations: true\n", "stream"),
])
def test_offload_mode(tiny_llama_dir: Path, extra: str, mode: str | None) -> None:
    assert offload_mode(load(f"base_model: {tiny_llama_dir}\n{BASE}{extra}").cfg) == mode
    cfg = load(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\ngradient_checkpointing: offload\n").cfg
    assert offload_mode(cfg) == "stream"
