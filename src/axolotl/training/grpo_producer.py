"""The rollout producer behind `trl.use_data_producer` (and `async_prefetch` / `prefetch_depth`).

TRL 1.16 generates each batch of completions synchronously, with the policy being trained, at the
moment the batch is needed. The producer instead generates with a *sampler*: a frozen copy of the
policy whose trainable weights are refreshed from the policy every `trl.vllm_sync_interval`
optimizer steps (the same interval that paces weight pushes to vLLM). That copy is what makes a
background thread safe: the thread reads only the sampler, never the parameters the optimizer is
writing, and the refresh itself is a snapshot (cloned tensors) taken on the main thread between
steps and copied into the sampler by the thread that generates, before the job that asked for it.

Which weights generate which batch: generation batch `j` is submitted when batch `j - depth` is
consumed, with the snapshot current at that moment, and is consumed `depth` generation batches
later. So with `prefetch_depth: d` its completions come from weights up to `d` generation batches
(plus `vllm_sync_interval - 1` steps) old; with `prefetch_depth: 0` (or `use_data_producer` alone,
generating inline) and `vllm_sync_interval: 1` they come from exactly the weights TRL would use.

What is upcoming is read from the trainer's own epoch iterator (`Lookahead` wraps it), so the
order of prompts, the sampler's seed and checkpoint resumption stay the Trainer's. A prefetch never
crosses an epoch's end: the first batch of the next epoch is generated when it is needed.

Only the token work runs in the background (`generate`, and the sampler's log-probs when the
off-policy correction needs them); prompts are tokenized on the main thread when a job is
submitted, and decoding, rewards, advantages and metrics stay on the main thread where TRL does
them. Random draws: with `prefetch_depth` >= 1 the sampling thread and training draw from torch's
global generator concurrently, so such runs are correct but not bit-reproducible.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import pad


def completion_ids_after_prompt(generated: torch.Tensor, prompt_length: int, eos_ids: list[int]) -> list[list[int]]:
    """Each row's generated tokens up to and including its first EOS (what TRL keeps)."""
    rows = []
    for row in generated[:, prompt_length:].cpu().tolist():
        end = next((i for i, token in enumerate(row) if token in eos_ids), len(row) - 1)
        rows.append(row[: end + 1])
    return rows


@dataclass
class Snapshot:
    """The policy's trainable weights as of optimizer step `step` (cloned: the optimizer may move on)."""

    step: int
    tensors: dict[str, torch.Tensor]


@dataclass
class Rollout:
    """What the producer generated for one generation batch."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    sampling_logps: list[list[float]] | None
    weights_step: int
    """Optimizer step of the weights that generated it."""

    def split(self, count: int) -> tuple[Rollout, Rollout | None]:
        """The first `count` completions, and the rest (None when nothing is left): streaming scoring
        takes a batch's rollout a chunk at a time."""
        head = Rollout(self.prompt_ids[:count], self.completion_ids[:count],
                       self.sampling_logps[:count] if self.sampling_logps is not None else None, self.weights_step)
        if count >= len(self.prompt_ids):
            return head, None
        rest = Rollout(self.prompt_ids[count:], self.completion_ids[count:],
                       self.sampling_logps[count:] if self.sampling_logps is not None else None, self.weights_step)
        return head, rest


@dataclass
class Lookahead:
    """The Trainer's epoch iterator, able to show items it has not handed out yet. Items are
    numbered in the order served; recently served ones stay findable (by identity) so the trainer
    can tell where in the stream the batch it is consuming sits."""

    source: Iterator[Any]
    window: int
    served: int = 0
    ahead: deque[Any] = field(default_factory=deque)
    recent: deque[tuple[int, Any]] = field(default_factory=deque)

    def __iter__(self) -> Lookahead:
        return self

    def __next__(self) -> Any:
        item = self.ahead.popleft() if self.ahead else next(self.source)
        self.recent.append((self.served, item))
        while len(self.recent) > self.window:
            self.recent.popleft()
        self.served += 1
        return item

    def serial_of(self, item: Any) -> int | None:
        """The number of a served item (None when it did not come from this iterator)."""
        return next((serial for serial, seen in reversed(self.recent) if seen is item), None)

    def item(self, serial: int) -> Any:
        """Item number `serial`, served or upcoming; None past the end of the epoch."""
        if serial < self.served:
            return next((seen for number, seen in self.recent if number == serial), None)
        while len(self.ahead) <= serial - self.served:
            try:
                self.ahead.append(next(self.source))
            except StopIteration:
                return None
        return self.ahead[serial - self.served]


class RolloutProducer:
    """Generates rollouts with the sampler copy, inline (`depth` None) or in one background thread."""

    def __init__(self, trainer: Any, depth: int | None, sync_interval: int, sampling_logps: bool) -> None:
        self.trainer = trainer
        self.depth = depth
        self.sync_interval = sync_interval
        self.sampling_logps = sampling_logps
        policy = trainer.accelerator.unwrap_model(trainer.model)
        self.trainable = {name: p for name, p in policy.named_parameters() if p.requires_grad}
        self.sampler = copy.deepcopy(policy).requires_grad_(False).eval()
        self.sampler_params = dict(self.sampler.named_parameters())
        self.snapshot: Snapshot | None = None
        self.loaded: Snapshot | None = None
        self.jobs: dict[int, Future[Rollout]] = {}
        self.lookahead: Lookahead | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grpo-producer") if depth is not None else None
        self.lock = threading.Lock()  # the sampler is used by one job at a time

    def snapshot_for(self, step: int) -> Snapshot:
        """The snapshot a job submitted at optimizer step `step` generates with: refreshed once
        `sync_interval` steps have passed since the last refresh. Main thread only."""
        if self.snapshot is None or step - self.snapshot.step >= self.sync_interval:
            self.snapshot = Snapshot(step, {name: p.detach().clone() for name, p in self.trainable.items()})
        return self.snapshot

    def submit(self, serial: int, rows: list[dict[str, Any]], step: int) -> None:
        """Queue generation of the batch numbered `serial` (no-op when it is queued already)."""
        if serial in self.jobs:
            return
        prompt_ids, images, _ = self.trainer._tokenize_prompts(copy.deepcopy([row["prompt"] for row in rows]))
        if images is not None:
            raise NotImplementedError("the GRPO data producer does not generate from images yet")
        snapshot = self.snapshot_for(step)
        if self.pool is None:
            done: Future[Rollout] = Future()
            done.set_result(self._generate(prompt_ids, snapshot))
            self.jobs[serial] = done
        else:
            self.jobs[serial] = self.pool.submit(self._generate, prompt_ids, snapshot)

    def prepare(self, serial: int, generate_every: int, step: int) -> None:
        """At the generation point of batch `serial`: make sure it is queued, then queue the next
        `depth` generation batches of this epoch with the current snapshot."""
        assert self.lookahead is not None
        for ahead in range((self.depth or 0) + 1):
            rows = self.lookahead.item(serial + ahead * generate_every)
            if rows is None:
                break
            self.submit(serial + ahead * generate_every, rows, step)
        for old in [number for number in self.jobs if number < serial]:  # left behind by a resumed iterator
            self.jobs.pop(old).cancel()

    def take(self, serial: int) -> Rollout:
        """The rollout of batch `serial` (waiting for it); the trainer checks its prompts as it uses them."""
        return self.jobs.pop(serial).result()

    def close(self) -> None:
        """At the end of `train()`: drop queued work and wait for the job in flight (it holds the
        sampler). The thread stays, so a later `train()` (a resumed run) can use it again."""
        for job in self.jobs.values():
            if not job.cancel():
                job.exception()  # waits; a failure of work nobody will consume is not raised
        self.jobs.clear()
        self.lookahead = None

    def _load(self, snapshot: Snapshot) -> None:
        if snapshot is self.loaded:
            return
        with torch.no_grad():
            for name, tensor in snapshot.tensors.items():
                self.sampler_params[name].copy_(tensor)
        self.loaded = snapshot

    def _generate(self, prompt_ids: list[list[int]], snapshot: Snapshot) -> Rollout:
        """Sample `num_generations` completions per prompt with the sampler (TRL's transformers path:
        left-padded prompts, the trainer's GenerationConfig, completions cut after the first EOS)."""
        trainer = self.trainer
        with self.lock:
            self._load(snapshot)
            device = trainer.accelerator.device
            tensors = [torch.tensor(ids) for ids in prompt_ids]
            pad_id, multiple = trainer._tokenizer.pad_token_id, trainer.pad_to_multiple_of
            input_ids = pad(tensors, padding_value=pad_id, padding_side="left", pad_to_multiple_of=multiple)
            attention = pad([torch.ones_like(t) for t in tensors], padding_value=0, padding_side="left",
                            pad_to_multiple_of=multiple)
            input_ids, attention = input_ids.to(device), attention.to(device)
            with unwrap_model_for_generation(self.sampler, trainer.accelerator,
                                             generation_kwargs=trainer.generation_kwargs,
                                             gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
                                             ) as sampler, torch.no_grad():
                generated = sampler.generate(input_ids=input_ids, attention_mask=attention,
                                             generation_config=trainer.generation_config)
            completion_ids = completion_ids_after_prompt(generated, input_ids.size(1), trainer.eos_token_ids)
            logps = self._sampling_logps(prompt_ids, completion_ids) if self.sampling_logps else None
        return Rollout(prompt_ids, completion_ids, logps, snapshot.step)

    def _sampling_logps(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list[list[float]]:
        """The sampler's log-probability of each generated token (with the trainer's temperature), as
        vLLM reports them: what the importance-sampling correction divides by."""
        trainer = self.trainer
        device = trainer.accelerator.device
        prompts = pad([torch.tensor(ids) for ids in prompt_ids], padding_value=trainer._tokenizer.pad_token_id,
                      padding_side="left").to(device)
        prompt_mask = pad([torch.ones(len(ids), dtype=torch.long) for ids in prompt_ids], padding_value=0,
                          padding_side="left").to(device)
        completions = pad([torch.tensor(ids, dtype=torch.long) for ids in completion_ids],
                          padding_value=trainer._tokenizer.pad_token_id, padding_side="right").to(device)
        completion_mask = pad([torch.ones(len(ids), dtype=torch.long) for ids in completion_ids], padding_value=0,
                              padding_side="right").to(device)
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(
                self.sampler, torch.cat([prompts, completions], dim=1), torch.cat([prompt_mask, completion_mask], 1),
                completions.size(1), batch_size=trainer.args.per_device_train_batch_size)
        return [row[: len(ids)].tolist() for row, ids in zip(logps.float().cpu(), completion_ids)]
