"""LoRA projections fused with their frozen base weights, with hand-written backward passes.

A LoRA projection computes y = x W^T + bias + s (x A^T) B^T. PEFT runs it as five autograd
nodes (base linear, A, B, the scale and the sum), each with its own full-size temporaries: the
scaled (tokens, out) update is written twice before it is added, and backward adds two
(tokens, in) input gradients. Here one node computes the update inside the output GEMM
(`addmm(alpha=s)`), applies s on the small (tokens, r) side, and accumulates the input gradient
in place. It saves only x and the (tokens, r) product x A^T.

The MLP (`down(silu(gate(x)) * up(x))`) is one node as well. Autograd would keep gate(x),
silu(gate(x)), up(x) and their product for backward (four (tokens, intermediate) tensors); this
keeps gate(x) and up(x) and recomputes the other two in backward, elementwise and cheap.

All matmuls run in the compute dtype: the autocast dtype when autocast is on (as PEFT's layers
compute under autocast), else the input's dtype. Frozen base weights and biases get no gradient.
Pure PyTorch, so the same code runs on CPU and GPU. `lora_linear_reference` and
`lora_mlp_reference` are the unfused formulas the tests compare against.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


class LoraProjection(NamedTuple):
    """One projection: the frozen base `weight` (out, in) and `bias`, and the adapter `a` (r, in),
    `b` (out, r) with its `scale` (alpha / r); `a`/`b` are None for a projection without LoRA."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    a: torch.Tensor | None
    b: torch.Tensor | None
    scale: float


def lora_linear_reference(x: torch.Tensor, p: LoraProjection) -> torch.Tensor:
    """The unfused formula, as PEFT computes it with dropout 0."""
    y = F.linear(x, p.weight, p.bias)
    if p.a is None or p.b is None:
        return y
    return y + F.linear(F.linear(x, p.a), p.b) * p.scale


def lora_mlp_reference(x: torch.Tensor, gate: LoraProjection, up: LoraProjection,
                       down: LoraProjection) -> torch.Tensor:
    return lora_linear_reference(F.silu(lora_linear_reference(x, gate)) * lora_linear_reference(x, up), down)


def _forward(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, a: torch.Tensor | None,
             b: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """y and the adapter's (tokens, r) product x A^T (None without an adapter); 2-D x."""
    y = F.linear(x, w, bias)
    if a is None or b is None:
        return y, None
    h = x @ a.t()
    y.addmm_(h, b.t(), alpha=scale)
    return y, h


def _backward(dy: torch.Tensor, x: torch.Tensor, w: torch.Tensor, a: torch.Tensor | None,
              b: torch.Tensor | None, h: torch.Tensor | None, scale: float, dx: torch.Tensor | None,
              need: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients for x (added into `dx` when given), A and B; `need` says which are wanted."""
    need_x, need_a, need_b = need
    if need_x:
        dx = dy @ w if dx is None else dx.addmm_(dy, w)
    if a is None or b is None or h is None:
        return dx, None, None
    dh = (dy @ b).mul_(scale)
    db = (dy.t() @ h).mul_(scale) if need_b else None
    da = dh.t() @ x if need_a else None
    if need_x:
        assert dx is not None
        dx.addmm_(dh, a)
    return dx, da, db


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y, h = _forward(x, w, bias, a, b, scale)
        ctx.save_for_backward(x, w, a, b, h)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, w, a, b, h = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, da, db = _backward(dy, x, w, a, b, h, ctx.scale, None, (need[0], need[3], need[4]))
        return dx, None, None, da, db, None


class _LoraMLP(torch.autograd.Function):
    """down(silu(gate(x)) * up(x)) with each projection given as (w, bias, a, b); scales in `scales`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scales: tuple[float, float, float],  # type: ignore[override]
                *params: torch.Tensor | None) -> torch.Tensor:
        gate, up, down = params[0:4], params[4:8], params[8:12]
        with torch.autocast(x.device.type, enabled=False):
            g, hg = _forward(x, *gate, scales[0])
            u, hu = _forward(x, *up, scales[1])
            y, hd = _forward(F.silu(g) * u, *down, scales[2])
        ctx.save_for_backward(x, g, u, hg, hu, hd, *(t for i, t in enumerate(params) if i % 4 != 1))
        ctx.scales = scales
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, g, u, hg, hu, hd, wg, ag, bg, wu, au, bu, wd, ad, bd = ctx.saved_tensors
        need = ctx.needs_input_grad  # (x, scales, wg, bias_g, ag, bg, wu, bias_u, au, bu, wd, bias_d, ad, bd)
        silu = F.silu(g)  # recomputed: not saved in forward
        product = silu * u
        dp, dad, dbd = _backward(dy, product, wd, ad, bd, hd, ctx.scales[2], None, (True, need[12], need[13]))
        del product
        assert dp is not None
        du = dp * silu
        del silu
        dg = torch.ops.aten.silu_backward(dp.mul_(u), g)  # the kernel autograd's own SiLU backward uses
        del dp
        dx, dag, dbg = _backward(dg, x, wg, ag, bg, hg, ctx.scales[0], None, (need[0], need[4], need[5]))
        dx, dau, dbu = _backward(du, x, wu, au, bu, hu, ctx.scales[1], dx, (need[0], need[8], need[9]))
        return dx, None, None, None, dag, dbg, None, None, dau, dbu, None, None, dad, dbd


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The autocast dtype when autocast is on for x's device, else x's dtype."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A differentiable cast (the fp32 adapter weights get fp32 gradients back through it)."""
    return t if t is None or t.dtype == dtype else t.to(dtype)


def _parts(p: LoraProjection, dtype: torch.dtype) -> list[torch.Tensor | None]:
    return [_cast(p.weight, dtype), _cast(p.bias, dtype), _cast(p.a, dtype), _cast(p.b, dtype)]


def lora_linear(x: torch.Tensor, p: LoraProjection) -> torch.Tensor:
    """`lora_linear_reference` as one autograd node; x is (..., in)."""
    if p.a is None or p.b is None:
        return F.linear(x, p.weight, p.bias)
    dtype = compute_dtype(x)
    flat = x.reshape(-1, x.shape[-1]).to(dtype)
    w, bias, a, b = _parts(p, dtype)
    y = _LoraLinear.apply(flat, w, bias, a, b, float(p.scale))
    return y.view(*x.shape[:-1], y.shape[-1])


def lora_mlp(x: torch.Tensor, gate: LoraProjection, up: LoraProjection, down: LoraProjection) -> torch.Tensor:
    """`lora_mlp_reference` (SiLU-gated MLP) as one autograd node; x is (..., hidden)."""
    dtype = compute_dtype(x)
    flat = x.reshape(-1, x.shape[-1]).to(dtype)
    params = [*_parts(gate, dtype), *_parts(up, dtype), *_parts(down, dtype)]
    scales = (float(gate.scale), float(up.scale), float(down.scale))
    y = _LoraMLP.apply(flat, scales, *params)
    return y.view(*x.shape[:-1], y.shape[-1])
