"""A tokenizer wrapper that counts calls, to pin "one tokenizer call per batch" in tests."""

from __future__ import annotations

from typing import Any


class CountingTokenizer:
    """Delegates everything to `inner`; `calls` counts batched encodes, whether made through the
    tokenizer's `__call__` or straight through its Rust backend's `encode_batch(_fast)`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.inner(*args, **kwargs)

    @property
    def backend_tokenizer(self) -> Any:
        backend = getattr(self.inner, "backend_tokenizer", None)
        return None if backend is None else _CountingBackend(backend, self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _CountingBackend:
    def __init__(self, inner: Any, owner: CountingTokenizer) -> None:
        self.inner = inner
        self.owner = owner

    def encode_batch(self, *args: Any, **kwargs: Any) -> Any:
        self.owner.calls += 1
        return self.inner.encode_batch(*args, **kwargs)

    def encode_batch_fast(self, *args: Any, **kwargs: Any) -> Any:
        self.owner.calls += 1
        return self.inner.encode_batch_fast(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
