"""The fused LoRA projections and MLP (`axolotl.kernels.lora`) against the unfused formulas:
output and the gradients of x, A and B.

Bounds (relative Frobenius error, ||got - want|| / ||want||):
- fp32: <= 1e-5 against the unfused fp32 formula (same arithmetic, another summation order);
- bf16: measured against the fp64 result, the fused error is at most 1.25x the unfused bf16
  formula's own error + 1e-3, and below 2e-2 in absolute terms (bf16 has 8 mantissa bits).
The CUDA cases run the same checks on a GPU and are skipped without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from axolotl.kernels.lora import (
    LoraProjection,
    lora_linear,
    lora_linear_reference,
    lora_mlp,
    lora_mlp_reference,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.fixture(autouse=True)
def exact_fp32_matmuls() -> Iterator[None]:
    """fp32 means fp32 here: a training run earlier in the process may have enabled TF32."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def _projection(generator: torch.Generator, fan_in: int, fan_out: int, rank: int, bias: bool = False,
                lora: bool = True) -> LoraProjection:
    weight = torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64) / fan_in**0.5
    return LoraProjection(
        weight,
        torch.randn(fan_out, generator=generator, dtype=torch.float64) if bias else None,
        torch.randn(rank, fan_in, generator=generator, dtype=torch.float64) / fan_in**0.5 if lora else None,
        torch.randn(fan_out, rank, generator=generator, dtype=torch.float64) / rank**0.5 if lora else None,
        16 / rank,
    )


def _to(p: LoraProjection, dtype: torch.dtype, device: str, adapter_dtype: torch.dtype | None = None) -> LoraProjection:
    """Frozen base weights in `dtype`; fresh trainable adapter weights (fp32 adapters as PEFT keeps them)."""
    def leaf(t: torch.Tensor | None, d: torch.dtype) -> torch.Tensor | None:
        return None if t is None else t.detach().to(device=device, dtype=d).clone().requires_grad_()
    return LoraProjection(p.weight.to(device, dtype), None if p.bias is None else p.bias.to(device, dtype),
                          leaf(p.a, adapter_dtype or dtype), leaf(p.b, adapter_dtype or dtype), p.scale)


def _run(fn: Callable[..., torch.Tensor], x: torch.Tensor, projections: list[LoraProjection], upstream: torch.Tensor,
         dtype: torch.dtype, device: str, adapter_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Output and gradients (x, then A and B of each adapted projection) in fp64 for comparison."""
    x = x.detach().to(device, dtype).clone().requires_grad_()
    ps = [_to(p, dtype, device, adapter_dtype) for p in projections]
    y = fn(x, *ps)
    y.backward(upstream.to(device, y.dtype))
    grads = [t.grad for p in ps for t in (p.a, p.b) if t is not None]
    return [t.detach().double().cpu() for t in (y, x.grad, *grads)]


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def _case(kind: str, seed: int = 0) -> tuple[Callable, Callable, torch.Tensor, list[LoraProjection], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 37, 64, generator=g, dtype=torch.float64)
    if kind == "linear":
        ps = [_projection(g, 64, 48, 8)]
        fused, reference, out = lora_linear, lora_linear_reference, 48
    elif kind == "linear-bias":
        ps = [_projection(g, 64, 48, 8, bias=True)]
        fused, reference, out = lora_linear, lora_linear_reference, 48
    elif kind == "mlp":
        ps = [_projection(g, 64, 160, 8), _projection(g, 64, 160, 8), _projection(g, 160, 64, 8)]
        fused, reference, out = lora_mlp, lora_mlp_reference, 64
    elif kind == "mlp-partial":  # gate without adapter, ranks differ, a biased down projection
        ps = [_projection(g, 64, 160, 8, lora=False), _projection(g, 64, 160, 4), _projection(g, 160, 64, 16, True)]
        fused, reference, out = lora_mlp, lora_mlp_reference, 64
    else:
        raise AssertionError(kind)
    return fused, reference, x, ps, torch.randn(3, 37, out, generator=g, dtype=torch.float64)


KINDS = ["linear", "linear-bias", "mlp", "mlp-partial"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_fp32_matches_the_unfused_formula(kind: str, device: str) -> None:
    fused, reference, x, ps, upstream = _case(kind)
    got = _run(fused, x, ps, upstream, torch.float32, device)
    want = _run(reference, x, ps, upstream, torch.float32, device)
    assert len(got) == len(want) >= 4
    for index, (a, b) in enumerate(zip(got, want)):
        assert _rel(a, b) <= 1e-5, f"tensor {index} (0 = output, 1 = dx, then dA/dB)"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_bf16_error_is_that_of_the_unfused_bf16_formula(kind: str, device: str) -> None:
    fused, reference, x, ps, upstream = _case(kind, seed=1)
    exact = _run(reference, x, ps, upstream, torch.float64, "cpu")
    got = _run(fused, x, ps, upstream, torch.bfloat16, device)
    unfused = _run(reference, x, ps, upstream, torch.bfloat16, device)
    for index, (a, b, truth) in enumerate(zip(got, unfused, exact)):
        fused_error, unfused_error = _rel(a, truth), _rel(b, truth)
        assert fused_error <= 1.25 * unfused_error + 1e-3, f"tensor {index}: {fused_error} vs {unfused_error}"
        assert fused_error < 2e-2, f"tensor {index}"


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_autocast_computes_in_bf16_and_returns_fp32_adapter_gradients(kind: str) -> None:
    """Under autocast (bf16 weights, fp32 adapters, as `bf16: true` trains) the fused path matches
    the unfused one run under the same autocast, with fp32 gradients for the fp32 adapters."""
    fused, reference, x, ps, upstream = _case(kind, seed=2)
    exact = _run(reference, x, ps, upstream, torch.float64, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(fused, x, ps, upstream, torch.bfloat16, "cpu", adapter_dtype=torch.float32)
        unfused = _run(reference, x, ps, upstream, torch.bfloat16, "cpu", adapter_dtype=torch.float32)
    for index, (a, b, truth) in enumerate(zip(got, unfused, exact)):
        assert _rel(a, truth) <= 1.25 * _rel(b, truth) + 1e-3, f"tensor {index}"


def test_adapter_gradients_keep_the_adapter_dtype() -> None:
    _, _, x, ps, _ = _case("mlp")
    projections = [_to(p, torch.bfloat16, "cpu", adapter_dtype=torch.float32) for p in ps]
    y = lora_mlp(x.to(torch.bfloat16), *projections)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    for p in projections:
        assert p.a.grad is not None and p.a.grad.dtype == torch.float32
        assert p.b.grad is not None and p.b.grad.dtype == torch.float32
        assert not p.weight.requires_grad


def test_a_broken_scale_is_caught() -> None:
    """The comparison can fail: a wrong scale on one projection is far outside the bound."""
    fused, reference, x, ps, upstream = _case("mlp")
    wrong = [ps[0], ps[1], ps[2]._replace(scale=ps[2].scale * 1.01)]
    got = _run(fused, x, wrong, upstream, torch.float32, "cpu")
    want = _run(reference, x, ps, upstream, torch.float32, "cpu")
    assert max(_rel(a, b) for a, b in zip(got, want)) > 1e-4


def test_the_mlp_saves_fewer_activations_than_autograd() -> None:
    """What autograd keeps for backward: gate(x), up(x) and x (+ the small x A^T), not silu(gate)
    and the product as the unfused formula does."""
    _, _, x, ps, _ = _case("mlp")
    x = x.float()

    def saved_bytes(fn: Callable[..., torch.Tensor]) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            if t.shape[-1] == 160 and t.numel() == 3 * 37 * 160:  # the (tokens, intermediate) activations
                total += t.numel() * t.element_size()
            return t

        projections = [_to(p, torch.float32, "cpu") for p in ps]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x.detach().clone().requires_grad_(), *projections)
        return total

    row = 3 * 37 * 160 * 4
    assert saved_bytes(lora_mlp) == 2 * row  # gate(x), up(x)
    assert saved_bytes(lora_mlp_reference) >= 4 * row
