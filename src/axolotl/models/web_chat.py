"""The web chat of `axolotl inference --gradio`: a gradio ChatInterface over the terminal chat's
model, prompt formatting and generation settings, with replies streamed as they are generated.

gradio is an optional extra (`pip install 'axolotl[gradio]'`) and is imported only here, when a
chat is built. The server binds to 127.0.0.1 unless `gradio_server_name` says otherwise, shares
nothing unless `gradio_share: true`, and gradio's usage analytics are off.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from axolotl.models.inference import GenerationSettings, encode_prompt

if TYPE_CHECKING:
    from gradio import Blocks
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

INSTALL_HINT = "pip install 'axolotl[gradio]'"
DEFAULT_TITLE = "Axolotl chat"


class GradioMissing(ImportError):
    """gradio is not installed (or one of its dependencies is broken); the message says what to do."""

    def __init__(self, broken: ImportError | None = None) -> None:
        what = "is not installed" if broken is None else f"cannot be imported ({broken})"
        super().__init__(f"`axolotl inference --gradio` needs gradio, which {what}; install it with "
                         f"`{INSTALL_HINT}` or chat in the terminal (leave out --gradio)")


def import_gradio() -> Any:
    """The gradio module, with its analytics off (set before the import: gradio reads it then)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as error:
        raise GradioMissing(None if error.name == "gradio" else error) from error
    return gradio


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the chat is served: the `gradio_*` keys of the config."""

    title: str = DEFAULT_TITLE
    share: bool = False
    server_name: str = "127.0.0.1"
    server_port: int | None = None
    """None: gradio's choice (7860, or the next free port; `GRADIO_SERVER_PORT` overrides)."""

    @classmethod
    def from_config(cls, cfg: AxolotlConfig) -> ServerSettings:
        return cls(title=cfg.gradio_title or DEFAULT_TITLE, share=bool(cfg.gradio_share),
                   server_name=cfg.gradio_server_name or "127.0.0.1", server_port=cfg.gradio_server_port)


def _text(content: Any) -> str:
    """The text of a chat message's content (a string, or gradio's list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text") or "")
    if isinstance(content, Sequence):
        return "".join(_text(part) for part in content)
    return ""


def chat_history(history: Sequence[Any]) -> list[dict[str, str]]:
    """gradio's history as `{"role", "content"}` text turns (files and other media are dropped)."""
    turns = []
    for message in history:
        if isinstance(message, Mapping):
            role, content = message.get("role"), _text(message.get("content"))
        else:  # a `[user, assistant]` pair (gradio 5's "tuples" history)
            for role, content in zip(("user", "assistant"), message):
                if content:
                    turns.append({"role": role, "content": _text(content)})
            continue
        if role in ("user", "assistant", "system") and content:
            turns.append({"role": role, "content": content})
    return turns


def stream_reply(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, message: str,
                 history: Sequence[Mapping[str, str]], settings: GenerationSettings) -> Iterator[str]:
    """The reply so far, after each new piece of text: `generate` runs in a thread and feeds a
    `TextIteratorStreamer`; an error in generation is raised here once the stream ends."""
    import torch
    from transformers import TextIteratorStreamer

    inputs = encode_prompt(tokenizer, message, history, layout=settings.prompt_layout)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with torch.no_grad():
                model.generate(**inputs, **settings.kwargs(), streamer=streamer,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        except BaseException as error:  # noqa: BLE001 - handed to the reading thread below
            failures.append(error)
            streamer.end()

    worker = threading.Thread(target=work, name="axolotl-web-chat-generate", daemon=True)
    worker.start()
    reply = ""
    for piece in streamer:
        reply += piece
        yield reply
    worker.join()
    if failures:
        raise failures[0]


def build_chat(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings,
               title: str = DEFAULT_TITLE) -> Blocks:
    """The chat app, not yet launched; its API endpoint is `/chat` (message -> reply so far)."""
    gr = import_gradio()

    def chat(message: Any, history: list[Any]) -> Iterator[str]:  # the name is the endpoint's: /chat
        text = _text(message).strip()
        if not text:
            yield ""
            return
        yield from stream_reply(model, tokenizer, text, chat_history(history), settings)

    options: dict[str, Any] = {}
    if "type" in inspect.signature(gr.ChatInterface).parameters:  # gradio 5: ask for role/content history
        options["type"] = "messages"
    # One generation at a time: the model (and its KV cache) is shared by every visitor.
    return gr.ChatInterface(chat, title=title, analytics_enabled=False, concurrency_limit=1, **options)


def launch(app: Blocks, server: ServerSettings, *, block: bool = True) -> str:
    """Serve `app` and return its local URL. With `block` this returns only after Ctrl-C, the server
    closed; otherwise the server runs in a background thread until `app.close()`."""
    # The server always starts in the background and, with `block`, we wait here ourselves: Ctrl-C
    # then lands in this loop (or in launch) and the `finally` closes the server, wherever it hit.
    # gradio's own blocking wait misses a Ctrl-C that arrives between the server starting and the
    # wait beginning, which left the process running after Ctrl-C on a loaded machine.
    try:
        _, local_url, _ = app.launch(server_name=server.server_name, server_port=server.server_port,
                                     share=server.share, prevent_thread_lock=True, ssr_mode=False,
                                     inbrowser=False, show_error=True)
        if not block:
            return local_url
        while True:
            time.sleep(0.2)
    except BaseException:
        app.close()
        raise
