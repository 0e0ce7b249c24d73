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


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0

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


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str,
                  history: Sequence[Mapping[str, str]] = ()) -> str:
    """The text the model sees for `prompt`; earlier `{"role", "content"}` turns (the web chat's)
    are rendered before it when there is a chat template, and dropped for plain-text models."""
    if tokenizer.chat_template:
        messages = [*history, {"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str,
                  history: Sequence[Mapping[str, str]] = ()) -> BatchEncoding:
    """Token ids (a batch of one) for `format_prompt`; a chat template writes its own bos."""
    text = format_prompt(tokenizer, prompt, history)
    return tokenizer(text, return_tensors="pt", add_special_tokens=not tokenizer.chat_template)


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str,
             settings: GenerationSettings, stream: bool = True) -> str:
    """Generate a reply (printing it token by token when `stream`), stopping at eos."""
    import torch
    from transformers import TextStreamer

    inputs = encode_prompt(tokenizer, prompt)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    with torch.no_grad():
        output = model.generate(**inputs, **settings.kwargs(), streamer=streamer,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
