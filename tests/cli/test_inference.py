"""`axolotl inference`: piped stdin is one prompt; a terminal session reads lines until EOF; `--gradio`
serves a web chat on localhost until Ctrl-C (the app itself: tests/models/test_web_chat.py)."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import AXOLOTL_SCRIPT, cli_env


def write_config(tmp_path: Path, model_dir: Path) -> Path:
    config = tmp_path / "cfg.yml"
    config.write_text(f"base_model: {model_dir}\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n")
    return config


def test_piped_prompt_generates_and_exits(tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_llama_dir)
    result = subprocess.run([str(AXOLOTL_SCRIPT), "inference", str(config), "--max-new-tokens", "5"],
                            input="Hello there", capture_output=True, text=True, env=cli_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_gradio_serves_on_localhost_until_ctrl_c(tiny_llama_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="gradio is not installed (the `gradio` extra)")
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, tiny_llama_dir)
    config.write_text(config.read_text() + f"gradio_title: Tiny chat\ngradio_server_port: {port}\n"
                      "gradio_max_new_tokens: 4\n")
    process = subprocess.Popen([str(AXOLOTL_SCRIPT), "inference", str(config), "--gradio"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    page = None
    try:
        deadline = time.time() + 150
        while page is None and time.time() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5, trust_env=False)
            except httpx.TransportError:
                time.sleep(1)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert page is not None and page.status_code == 200, output
    assert "Tiny chat" in page.text
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output and "Traceback" not in output


def test_terminal_session_two_turns_then_eof(tiny_llama_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, tiny_llama_dir)
    leader, follower = pty.openpty()
    process = subprocess.Popen([str(AXOLOTL_SCRIPT), "inference", str(config), "--max-new-tokens", "3"],
                               stdin=follower, stdout=follower, stderr=follower, env=cli_env(), close_fds=True)
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float = 90) -> None:
        nonlocal seen
        deadline = time.time() + timeout
        while marker not in seen and time.time() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break
        assert marker in seen, seen.decode(errors="replace")[-500:]

    read_until(b"> ")
    for turn in (b"first question\n", b"second question\n"):
        seen = b""
        os.write(leader, turn)
        read_until(b"> ")
    os.write(leader, b"\x04")  # Ctrl-D: EOF
    assert process.wait(timeout=60) == 0
    os.close(leader)
