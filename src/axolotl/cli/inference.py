"""`axolotl inference config.yml [--lora-model-dir D] [--base-model M] [--gradio]`: chat with a model.

Piped stdin is read as one prompt (`cat prompt.txt | axolotl inference cfg.yml`); on a terminal
each line is a prompt until EOF (Ctrl-D) or Ctrl-C. Replies stream as they are generated.
`--gradio` serves the same chat in the browser until Ctrl-C (`axolotl.models.web_chat`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence, TextIO

from axolotl.cli.output import legacy_main, load_or_report

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig
    from axolotl.models.inference import GenerationSettings


def run(config: str, overrides: Sequence[str] = (), *, base_model: str | None = None,
        lora_model_dir: str | None = None, max_new_tokens: int | None = None, temperature: float | None = None,
        top_p: float = 1.0, gradio: bool = False, stdin: TextIO | None = None) -> int:
    """`max_new_tokens` / `temperature` left as None: the config's `gradio_*` values with `gradio`,
    else 128 tokens, greedy."""
    if gradio:
        from axolotl.models.web_chat import GradioMissing, import_gradio

        try:  # before anything slow: without gradio there is nothing to serve
            import_gradio()
        except GradioMissing as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    from axolotl.models.inference import GenerationSettings, generate, load_for_inference, prompt_layout

    cfg = loaded.cfg
    if gradio:
        max_new_tokens = cfg.gradio_max_new_tokens if max_new_tokens is None else max_new_tokens
        temperature = cfg.gradio_temperature if temperature is None else temperature
    settings = GenerationSettings(128 if max_new_tokens is None else max_new_tokens,
                                  0.0 if temperature is None else temperature, top_p, prompt_layout(cfg))
    model, tokenizer = load_for_inference(cfg, base_model, lora_model_dir)
    if gradio:
        return _serve(config, cfg, model, tokenizer, settings)
    source = stdin or sys.stdin
    if not source.isatty():
        prompt = source.read().strip()
        if prompt:
            generate(model, tokenizer, prompt, settings)
        return 0
    try:
        while True:
            line = input("> ")
            if line.strip():
                generate(model, tokenizer, line.strip(), settings)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
    return 0


def _serve(config: str, cfg: AxolotlConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
           settings: GenerationSettings) -> int:
    from axolotl.models.web_chat import ServerSettings, build_chat, launch

    server = ServerSettings.from_config(cfg)
    app = build_chat(model, tokenizer, settings, server.title)
    try:
        launch(app, server)  # until Ctrl-C
    except OSError as error:  # the address or port is taken, or cannot be bound
        print(f"error: {config}: the web chat cannot listen on {server.server_name}:"
              f"{server.server_port or 'a port from 7860'}: {error}; set `gradio_server_port` / "
              "`gradio_server_name` to a free address", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: `launch` has closed the server
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.inference CONFIG [--lora_model_dir=DIR] [--base_model=M]")
    options: dict[str, str] = {}
    rest: list[str] = []
    for arg in args[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        if key.replace("-", "_") in ("lora_model_dir", "base_model") and value:
            options[key.replace("-", "_")] = value
        elif arg == "--gradio":
            options["gradio"] = "1"
        else:
            rest.append(arg)
    raise SystemExit(run(args[0], rest, base_model=options.get("base_model"),
                         lora_model_dir=options.get("lora_model_dir"), gradio="gradio" in options))


if __name__ == "__main__":
    main()
