"""`type: completion`: raw text, every token trained, long texts split into sequence_len chunks.

Reference behaviour, token for token: the text (column `field:`, default `text`) is tokenized
WITH special tokens and truncated to 64 x sequence_len tokens (the reference's cap; anything
beyond it is discarded), EOS is appended when it is not already last and the cap leaves room,
and the result is cut into consecutive chunks of at most sequence_len tokens. So:

- the FIRST chunk starts with BOS (when the tokenizer adds one); later chunks have no BOS;
- the LAST chunk ends with EOS (unless the cap cut the text); earlier chunks have no EOS;
- a text of exactly k x sequence_len tokens (BOS and EOS counted) gives exactly k chunks, and
  a final chunk may be as short as the lone EOS (the pipeline's min_sample_len drops it).

Labels equal input_ids (train_on_inputs does not apply: there is no prompt to mask). An empty
or null text is dropped with a reason.
"""

from __future__ import annotations

from axolotl.data.encoding import encode_batch
from axolotl.data.errors import RowError
from axolotl.data.strategies.base import Batch, StrategyContext, TokenizedBatch
from axolotl.data.strategies.registry import register

CAP_IN_SEQUENCES = 64
"""A text is truncated to this many sequence_len chunks, as in the reference."""


class CompletionStrategy:
    """One tokenizer call per batch; each text may become several output rows (its chunks)."""

    def __init__(self, ctx: StrategyContext) -> None:
        self.tokenizer = ctx.tokenizer
        self.field = ctx.dataset.field or "text"
        self.chunk = ctx.sequence_len
        self.cap = ctx.sequence_len * CAP_IN_SEQUENCES
        self.eos: int | None = ctx.tokenizer.eos_token_id

    def __call__(self, batch: Batch) -> TokenizedBatch:
        out = TokenizedBatch()
        texts = self._texts(batch)
        kept: list[int] = []
        for index, text in enumerate(texts):
            if text:
                kept.append(index)
            else:
                out.drop(index, f"empty `{self.field}`")
        if not kept:
            return out
        encoded = encode_batch(self.tokenizer, [texts[index] for index in kept], add_special_tokens=True,
                                  max_length=self.cap)
        for index, ids in zip(kept, encoded, strict=True):
            for piece in self._chunks(self._with_eos(ids)):
                out.add(index, piece, list(piece))
        return out

    def _texts(self, batch: Batch) -> list[str | None]:
        if self.field not in batch:
            raise RowError(f"missing field `{self.field}` (type completion reads the text from it; "
                           "set `field:` to use another column)", self.field)
        texts = batch[self.field]
        for text in texts:
            if text is not None and not isinstance(text, str):
                raise RowError(f"field `{self.field}` must be text, not {type(text).__name__}", self.field)
        return texts

    def _with_eos(self, ids: list[int]) -> list[int]:
        """The reference appends EOS only below the cap, so a capped text ends mid-sentence without it."""
        if self.eos is None or not ids or ids[-1] == self.eos or len(ids) >= self.cap:
            return ids
        return [*ids, self.eos]

    def _chunks(self, ids: list[int]) -> list[list[int]]:
        return [ids[start:start + self.chunk] for start in range(0, len(ids), self.chunk)]


@register("completion")
def completion(ctx: StrategyContext) -> CompletionStrategy:
    return CompletionStrategy(ctx)
