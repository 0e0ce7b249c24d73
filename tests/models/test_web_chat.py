"""`axolotl inference --gradio`: the web chat streams the terminal chat's replies, answers over
HTTP on localhost without reaching anything else, and a missing gradio is a one-line error."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from axolotl.models.inference import GenerationSettings, format_prompt, generate, load_for_inference
from axolotl.models.web_chat import ServerSettings, chat_history, stream_reply
from axolotl.testing.configs import load

GREEDY = GenerationSettings(max_new_tokens=6)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def chat_model(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    out = tmp_path_factory.mktemp("web_chat_out")
    cfg = load(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\noutput_dir: {out}\n").cfg
    return load_for_inference(cfg)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every host name looked up and internet address connected to during the test, recorded (gradio
    swallows failures of its version checks and analytics) and refused unless it is loopback."""
    attempts: list[Any] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        if host not in LOOPBACK:
            raise socket.gaierror(f"test forbids looking up {host}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address[0])
            if address[0] not in LOOPBACK:
                raise OSError(f"test forbids connecting to {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts


def test_server_settings_default_to_localhost_and_read_gradio_keys(tmp_path: Path) -> None:
    assert ServerSettings.from_config(load("base_model: m\nlearning_rate: 1e-4\n").cfg) == ServerSettings(
        title="Axolotl chat", share=False, server_name="127.0.0.1", server_port=None)
    cfg = load("base_model: m\nlearning_rate: 1e-4\ngradio_title: Mine\ngradio_share: true\n"
               "gradio_server_name: 0.0.0.0\ngradio_server_port: 8123\n").cfg
    assert ServerSettings.from_config(cfg) == ServerSettings("Mine", True, "0.0.0.0", 8123)


def test_history_keeps_text_turns_of_either_gradio_format() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "yo"}]},
                {"role": "user", "content": {"path": "cat.png"}}]
    assert chat_history(messages) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert chat_history([["hi", "yo"], ["again", None]]) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "again"}]


def test_history_is_rendered_with_the_chat_template(chat_model: tuple[Any, Any]) -> None:
    _, tokenizer = chat_model
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"}]
    text = format_prompt(tokenizer, "second", history)
    assert text.index("first") < text.index("reply") < text.index("second")
    assert format_prompt(tokenizer, "second") == format_prompt(tokenizer, "second", ())


def test_streamed_reply_grows_and_ends_as_the_terminal_reply(chat_model: tuple[Any, Any]) -> None:
    model, tokenizer = chat_model
    pieces = list(stream_reply(model, tokenizer, "Hello there", [], GREEDY))
    assert pieces and all(later.startswith(earlier) for earlier, later in zip(pieces, pieces[1:]))
    assert pieces[-1] == generate(model, tokenizer, "Hello there", GREEDY, stream=False)


def test_generation_error_reaches_the_caller_instead_of_hanging(chat_model: tuple[Any, Any]) -> None:
    class Broken:
        def generate(self, **kwargs: Any) -> None:
            raise RuntimeError("out of memory")

    _, tokenizer = chat_model
    with pytest.raises(RuntimeError, match="out of memory"):
        list(stream_reply(Broken(), tokenizer, "Hello", [], GREEDY))


@pytest.mark.slow
def test_web_chat_answers_over_http_on_localhost(chat_model: tuple[Any, Any], loopback_only: list[Any]) -> None:
    pytest.importorskip("gradio", reason="gradio is not installed (the `gradio` extra)")
    from gradio_client import Client

    from axolotl.models.web_chat import build_chat, launch

    model, tokenizer = chat_model
    app = build_chat(model, tokenizer, GREEDY, title="Tiny chat")
    port = free_port()
    url = launch(app, ServerSettings(title="Tiny chat", server_port=port), block=False)
    try:
        assert url.startswith(f"http://127.0.0.1:{port}")
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        reply = client.predict(message="Hello there", api_name="/chat")
        client.close()
    finally:
        app.close()
    assert isinstance(reply, str) and reply.strip()
    assert reply == generate(model, tokenizer, "Hello there", GREEDY, stream=False)
    assert loopback_only and set(loopback_only) == {"127.0.0.1"}, loopback_only
    with pytest.raises(OSError):  # closed
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_missing_gradio_is_a_clear_error(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from axolotl.cli.inference import run

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n")
    assert run(str(config), gradio=True) == 1
    err = capsys.readouterr().err
    assert "pip install 'axolotl[gradio]'" in err and "Traceback" not in err


def test_taken_port_is_a_clear_error(tiny_llama_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("gradio", reason="gradio is not installed (the `gradio` extra)")
    from axolotl.cli.inference import run

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "cfg.yml"
        config.write_text(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                          f"gradio_server_port: {port}\n")
        assert run(str(config), gradio=True) == 1
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "gradio_server_port" in err and "Traceback" not in err
