"""Loading a trained model for generation, and formatting a user prompt the way it was trained.

The trained model is whatever `train` wrote to `output_dir` (full weights or a LoRA adapter);
`--base-model` / `--lora-model-dir` point elsewhere. Prompts go through the tokenizer's chat
template when it has one (what chat-format training used), else they are passed as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig
    from axolotl.data.strategies.instruction_formats import Layout


@dataclass(frozen=True)
class GenerationSettings:
    """How replies are produced: sampling settings and the prompt format of the training data."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    prompt_layout: Layout | None = None
    """The dataset's instruction format (see `prompt_layout`); None: chat template or plain text."""

    def kwargs(self) -> dict[str, Any]:
        if self.temperature <= 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_p": self.top_p}


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def load_for_inference(cfg: AxolotlConfig, base_model: str | None = None,
                       lora_model_dir: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model to chat with: explicit paths first, else the run's `output_dir`, else the base."""
    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    output = Path(cfg.output_dir)
    cfg = cfg.model_copy(deep=True)
    if base_model:
        cfg.base_model, cfg.reinit_weights = base_model, False
    elif lora_model_dir is None and is_model_dir(output):
        cfg.base_model, cfg.reinit_weights = str(output), False
    adapter_dir = lora_model_dir or (str(output) if cfg.adapter and is_adapter_dir(output) else None)
    if is_model_dir(Path(cfg.base_model)) and (Path(cfg.base_model) / "tokenizer_config.json").is_file():
        cfg.tokenizer_config = cfg.base_model
    cfg.gradient_checkpointing = False
    cfg.sample_packing = False
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, tokenizer)
    if adapter_dir:
        cfg.lora_model_dir = adapter_dir
        model = apply_adapter(cfg, model)
    model.eval()
    return model, tokenizer


def prompt_layout(cfg: AxolotlConfig) -> Layout | None:
    """The instruction layout of the config's first dataset (alpaca-style types and inline formats),
    or None when the model should be prompted through its chat template (or with plain text)."""
    from axolotl.data.strategies.instruction import instruction_prompt_layout

    datasets = cfg.datasets or []
    return instruction_prompt_layout(datasets[0]) if datasets else None


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str,
                  history: Sequence[Mapping[str, str]] = (), layout: Layout | None = None) -> str:
    """The text the model sees for `prompt`. With an instruction `layout` (the dataset's prompt
    format) the prompt is the instruction and the text ends at the response header, exactly as in
    training; earlier turns are dropped (the format has no turns). Otherwise earlier
    `{"role", "content"}` turns (the web chat's) are rendered through the chat template, or
    dropped for plain-text models."""
    if layout is not None:
        from axolotl.data.strategies.instruction_formats import Parts

        return layout.render(Parts(instruction=prompt, input="", output=""))
    if tokenizer.chat_template:
        messages = [*history, {"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str,
                  history: Sequence[Mapping[str, str]] = (), layout: Layout | None = None) -> BatchEncoding:
    """Token ids (a batch of one) for `format_prompt`. A chat template writes its own bos; an
    instruction prompt is tokenized with the special tokens, as the training prompt was."""
    text = format_prompt(tokenizer, prompt, history, layout)
    with_special = layout is not None or not tokenizer.chat_template
    return tokenizer(text, return_tensors="pt", add_special_tokens=with_special)


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
             settings: GenerationSettings, stream: bool = True) -> str:
    """Generate a reply (printing it token by token when `stream`), stopping at eos."""
    import torch
    from transformers import TextStreamer

    inputs = encode_prompt(tokenizer, prompt, layout=settings.prompt_layout)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    with torch.no_grad():
        output = model.generate(**inputs, **settings.kwargs(), streamer=streamer,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
