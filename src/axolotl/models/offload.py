"""Activation offloading: the tensors autograd saves for the backward pass wait in CPU RAM.

`activation_offloading: true | legacy` and `gradient_checkpointing: offload` both mean
"checkpoint every decoder layer and keep what the checkpoints save on the CPU". Under
non-reentrant checkpointing, what autograd still saves during the forward is each layer's input
(the hidden states the layer is recomputed from) and the activations outside the layers
(embeddings, final norm, head, loss); `ActivationOffload` moves those to (pinned) host memory as
they are saved and brings each back to its device when the backward needs it. Weights are never
copied (they stay resident anyway), nor are tensors smaller than `min_bytes` (the copy costs more
than it frees) or tensors already on the CPU.

Built only on `torch.autograd.graph.saved_tensors_hooks`. Variants:

- `true` (`stream`): device-to-host copies run on a side CUDA stream, so they overlap the
  forward's compute; the copy back is issued on the compute stream when the backward asks for it.
- `legacy` (`sync`): both copies on the compute stream (what `torch.autograd.graph.save_on_cpu`
  does), simplest and slowest.

Offloading changes where tensors wait, never their values: the loss and gradients are those of the
plain run (pinned by tests/models/test_offload.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.autograd.graph import saved_tensors_hooks

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

Mode = Literal["stream", "sync"]
MIN_BYTES = 1024
"""Tensors smaller than this stay where they are (torchtune's threshold)."""


def offload_mode(cfg: AxolotlConfig) -> Mode | None:
    """How the config asks for activations to be offloaded, None when it does not.
    `disk` / `offload_disk` / `hidden_states` are refused earlier (`models.model._unsupported`)."""
    if cfg.activation_offloading == "legacy":
        return "sync"
    if cfg.activation_offloading is True or cfg.gradient_checkpointing == "offload":
        return "stream"
    return None


@dataclass
class OffloadStats:
    """What the hooks did since the offloader was made (tests and logs read it)."""

    saved: int = 0
    """Tensors autograd saved while the hooks were active."""
    offloaded: int = 0
    offloaded_bytes: int = 0
    restored: int = 0


@dataclass
class _Offloaded:
    """A saved tensor's host copy, where it came from, and when its copy is complete."""

    host: torch.Tensor
    device: torch.device
    copied: Any = None
    """CUDA event recorded after the copy on the side stream (None for synchronous copies)."""


@dataclass
class ActivationOffload:
    """A reusable context manager: activations saved for backward inside it go to the CPU.

    `model` names the weights (and buffers) never to copy; its storages are read at every entry, so
    moving the model to a device after making the offloader is fine. `include_cpu` also copies
    tensors that already live on the CPU into fresh host buffers: useless in training, it lets the
    round trip be tested on machines without an accelerator.
    """

    model: torch.nn.Module
    mode: Mode = "stream"
    min_bytes: int = MIN_BYTES
    include_cpu: bool = False
    stats: OffloadStats = field(default_factory=OffloadStats)
    _resident: set[int] = field(default_factory=set, repr=False)
    _stream: Any = field(default=None, repr=False)
    _hooks: list[saved_tensors_hooks] = field(default_factory=list, repr=False)

    def __enter__(self) -> ActivationOffload:
        self._resident = {t.untyped_storage().data_ptr()
                          for t in [*self.model.parameters(), *self.model.buffers()] if t.device.type != "meta"}
        hooks = saved_tensors_hooks(self._pack, self._unpack)
        hooks.__enter__()
        self._hooks.append(hooks)
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.pop().__exit__(*exc)

    # ------------------------------------------------------------------------------------------

    def _wanted(self, tensor: torch.Tensor) -> bool:
        if type(tensor) is not torch.Tensor or tensor.layout != torch.strided:
            return False  # parameters, quantised/distributed tensor subclasses, sparse tensors
        if tensor.device.type == "cpu" and not self.include_cpu:
            return False
        if tensor.numel() * tensor.element_size() < self.min_bytes:
            return False
        return tensor.untyped_storage().data_ptr() not in self._resident  # views of weights stay

    def _pack(self, tensor: torch.Tensor) -> Any:
        self.stats.saved += 1
        if not self._wanted(tensor):
            return tensor
        pin = tensor.device.type == "cuda"
        host = torch.empty(tensor.size(), dtype=tensor.dtype, pin_memory=pin)
        copied = None
        if pin and self.mode == "stream":
            stream = self._side_stream(tensor.device)
            stream.wait_stream(torch.cuda.current_stream(tensor.device))  # the tensor is computed
            with torch.cuda.stream(stream):
                host.copy_(tensor, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record(stream)
            tensor.record_stream(stream)  # its memory is not reused before the copy has read it
        else:
            host.copy_(tensor, non_blocking=pin)
        self.stats.offloaded += 1
        self.stats.offloaded_bytes += tensor.numel() * tensor.element_size()
        return _Offloaded(host, tensor.device, copied)

    def _unpack(self, packed: Any) -> torch.Tensor:
        if not isinstance(packed, _Offloaded):
            return packed
        self.stats.restored += 1
        if packed.copied is not None:
            torch.cuda.current_stream(packed.device).wait_event(packed.copied)
        if packed.device.type == "cpu":
            return packed.host
        return packed.host.to(packed.device, non_blocking=packed.host.is_pinned())

    def _side_stream(self, device: torch.device) -> Any:
        if self._stream is None:
            self._stream = torch.cuda.Stream(device)
        return self._stream

