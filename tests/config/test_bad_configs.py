"""Bad configs must fail with errors a user can act on.

Every test starts from a small valid config written as YAML text with known line numbers,
breaks one thing, and checks that the error names the key (its dotted path), the exact line,
a fix or hint, and the bad value where there is one. The rendered text (what the user sees)
is checked as well as the structured `ConfigIssue`s.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from axolotl.config.environment import Environment
from axolotl.config.errors import ConfigError, ConfigIssue, format_path
from axolotl.config.loader import load_config
from axolotl.testing.configs import SOURCE, config_error, load

BASE = (
    "base_model: HuggingFaceTB/SmolLM2-135M\n"  # line 1
    "learning_rate: 0.0002\n"  # line 2
    "datasets:\n"  # line 3
    "  - path: tatsu-lab/alpaca\n"  # line 4
    "    type: alpaca\n"  # line 5
)
"""Minimal valid SFT config; anything appended starts at line 6."""

DPO_BASE = (
    "base_model: HuggingFaceTB/SmolLM2-135M\n"  # line 1
    "learning_rate: 0.0002\n"  # line 2
    "rl: dpo\n"  # line 3
    "datasets:\n"  # line 4
    "  - path: Intel/orca_dpo_pairs\n"  # line 5
    "    type: chatml.intel\n"  # line 6
)
"""Minimal valid DPO config; anything appended starts at line 7."""

GRPO_BASE = (
    "base_model: HuggingFaceTB/SmolLM2-135M\n"  # line 1
    "learning_rate: 0.0002\n"  # line 2
    "rl: grpo\n"  # line 3
    "datasets:\n"  # line 4
    "  - path: openai/gsm8k\n"  # line 5
    "    type: rewards.gsm8k_transform\n"  # line 6
    "trl:\n"  # line 7
    "  num_generations: 4\n"  # line 8
    "  reward_funcs: [rewards.accuracy]\n"  # line 9
)
"""Minimal GRPO config without micro_batch_size; anything appended starts at line 10."""


# -------------------------------------------------------------------------------------------
# helpers
# -------------------------------------------------------------------------------------------




def find_issue(err: ConfigError, path: tuple[str | int, ...]) -> ConfigIssue:
    matches = [i for i in err.issues if tuple(i.path) == path]
    assert matches, f"no issue at `{format_path(path)}`; got:\n{err}"
    return matches[0]


def assert_reported(err: ConfigError, path: tuple[str | int, ...], line: int | None, fix: str,
                    shows: str | None = None) -> ConfigIssue:
    """The issue at `path` is at `line`, says `fix` (message or hint) and shows `shows`."""
    issue = find_issue(err, path)
    where = f"{SOURCE}:{line}" if line is not None else SOURCE
    assert issue.location == where, f"expected {where}, got {issue.location}\n{err}"
    assert issue.severity == "error"
    advice = f"{issue.message} {issue.hint or ''}"
    assert fix in advice, f"expected {fix!r} in the message or hint:\n{issue.render()}"
    rendered = str(err)
    assert f"{where}: `{format_path(path)}`" in rendered, rendered
    if shows is not None:
        assert shows in issue.render(), issue.render()
    return issue


def line_of(issue: ConfigIssue) -> int | None:
    """The line number in `cfg.yml:12`, or None for a location without one."""
    head, _, tail = (issue.location or "").rpartition(":")
    return int(tail) if head == SOURCE and tail.isdigit() else None


def test_base_configs_are_valid() -> None:
    for text in (BASE, DPO_BASE, GRPO_BASE + "micro_batch_size: 4\n"):
        loaded = load(text)
        assert loaded.warnings == []
    assert load(BASE).cfg.base_model == "HuggingFaceTB/SmolLM2-135M"


# -------------------------------------------------------------------------------------------
# one bad key each: path, line, fix, value
# -------------------------------------------------------------------------------------------

SINGLE_KEY_CASES = [
    # typos, with did-you-mean
    pytest.param(BASE.replace("learning_rate:", "learnin_rate:"), ("learnin_rate",), 2,
                 "did you mean `learning_rate`?", None, id="typo-top-level"),
    pytest.param(BASE + "trl:\n  num_generation: 4\n", ("trl", "num_generation"), 7,
                 "did you mean `num_generations`?", None, id="typo-in-trl-block"),
    pytest.param(BASE + "special_tokens:\n  pad_tokn: <pad>\n", ("special_tokens", "pad_tokn"), 7,
                 "did you mean `pad_token`?", None, id="typo-in-special-tokens-block"),
    pytest.param(BASE + "    spilt: train\n", ("datasets", 0, "spilt"), 6,
                 "did you mean `split`?", None, id="typo-in-dataset-entry"),
    pytest.param(BASE + "    feild_messages: conversations\n", ("datasets", 0, "feild_messages"), 6,
                 "did you mean `field_messages`?", None, id="typo-in-dataset-entry-2"),
    pytest.param(BASE + "plugins:\n  - axolotl.integrations.liger.LigerPlugin\nliger_rms_nrm: true\n",
                 ("liger_rms_nrm",), 8, "did you mean `liger_rms_norm`?", None, id="typo-in-plugin-key"),
    # wrong types
    pytest.param(BASE + "micro_batch_size: abc\n", ("micro_batch_size",), 6,
                 "a whole number", "(got 'abc')", id="string-for-int"),
    pytest.param(BASE + "micro_batch_size: 4.5\n", ("micro_batch_size",), 6,
                 "a whole number", "(got 4.5)", id="float-for-int"),
    pytest.param(BASE + "sample_packing: [true]\n", ("sample_packing",), 6,
                 "true or false", "(got [True])", id="list-for-bool"),
    pytest.param(BASE + "base_model_config: {name: x}\n", ("base_model_config",), 6,
                 "a string", "(got {'name': 'x'})", id="mapping-for-str"),
    pytest.param(BASE + "trl:\n  num_generations: many\n", ("trl", "num_generations"), 7,
                 "a whole number", "(got 'many')", id="string-for-int-nested"),
    pytest.param(BASE.replace("0.0002", "fast"), ("learning_rate",), 2,
                 "must be a number", "(got 'fast')", id="string-for-learning-rate"),
    pytest.param(BASE.replace("  - path: tatsu-lab/alpaca\n    type: alpaca\n", "  - type: alpaca\n"),
                 ("datasets", 0), 4, "needs `path`", None, id="dataset-without-path"),
    # out of range
    pytest.param(BASE + "micro_batch_size: 0\n", ("micro_batch_size",), 6,
                 "must be > 0", "(got 0)", id="micro-batch-size-0"),
    pytest.param(BASE + "lora_dropout: 1.5\n", ("lora_dropout",), 6,
                 "must be < 1", "(got 1.5)", id="lora-dropout-1.5"),
    pytest.param(BASE + "val_set_size: -1\n", ("val_set_size",), 6,
                 "must be >= 0", "(got -1)", id="val-set-size-negative"),
    # closed sets of names
    pytest.param(BASE + "bf16: atuo\n", ("bf16",), 6,
                 "did you mean `auto`?", "(got 'atuo')", id="bf16-literal-typo"),
    pytest.param(BASE + "chat_template: chatm\n", ("chat_template",), 6,
                 "did you mean `chatml`?", "(got 'chatm')", id="unknown-chat-template"),
    pytest.param(BASE + "optimizer: adamw_torh\n", ("optimizer",), 6,
                 "did you mean `adamw_torch`?", "adamw_torh", id="unknown-optimizer"),
    pytest.param(BASE + "lr_scheduler: cosin\n", ("lr_scheduler",), 6,
                 "did you mean `cosine`?", "cosin", id="unknown-lr-scheduler-typo"),
    pytest.param(BASE + "lr_scheduler: sawtooth\n", ("lr_scheduler",), 6,
                 "cosine_with_min_lr", "sawtooth", id="unknown-lr-scheduler-lists-choices"),
    pytest.param(BASE.replace("type: alpaca", "type: alpacca"), ("datasets", 0, "type"), 5,
                 "did you mean `alpaca`?", "alpacca", id="unknown-dataset-type"),
    # dataset types of another method
    pytest.param(BASE.replace("type: alpaca", "type: chatml.intel"), ("datasets", 0, "type"), 5,
                 "alpaca", "chatml.intel", id="dpo-type-with-sft"),
    pytest.param(DPO_BASE.replace("type: chatml.intel", "type: alpaca"), ("datasets", 0, "type"), 6,
                 "chatml.intel", "not dpo", id="sft-type-with-dpo"),
    # not supported yet
    pytest.param(BASE + "relora: true\n", ("relora",), 6,
                 "is not supported yet", "(got True)", id="relora"),
    pytest.param(BASE + "xformers_attention: true\n", ("xformers_attention",), 6,
                 "is not supported yet", "(got True)", id="xformers-attention"),
    pytest.param(BASE + "plugins:\n  - axolotl.integrations.spectrum.SpectrumPlugin\n", ("plugins", 0), 7,
                 "is not supported yet", "SpectrumPlugin", id="unsupported-plugin"),
    pytest.param(BASE + "plugins:\n  - my_company.plugins.MyPlugin\n", ("plugins", 0), 7,
                 "no module `my_company.plugins` is installed or in the working directory",
                 "my_company.plugins.MyPlugin", id="custom-plugin-not-importable"),
    pytest.param(BASE + "plugins:\n  - axolotl.integrations.liger.LigerPlugn\n", ("plugins", 0), 7,
                 "did you mean `axolotl.integrations.liger.LigerPlugin`?", "LigerPlugn", id="plugin-typo"),
    # keys in the wrong place
    pytest.param(BASE + "liger_rms_norm: true\n", ("liger_rms_norm",), 6,
                 "axolotl.integrations.liger.LigerPlugin", None, id="plugin-key-without-plugin"),
    pytest.param(BASE + "gpu_memory_utilization: 0.5\n", ("gpu_memory_utilization",), 6,
                 "`vllm:`", None, id="flattened-vllm-key"),
]


@pytest.mark.parametrize(("text", "path", "line", "fix", "shows"), SINGLE_KEY_CASES)
def test_single_bad_key(text: str, path: tuple[str | int, ...], line: int, fix: str, shows: str | None) -> None:
    err = config_error(text)
    assert_reported(err, path, line, fix, shows)


# -------------------------------------------------------------------------------------------
# combinations that each key alone allows
# -------------------------------------------------------------------------------------------

CONFLICT_CASES = [
    pytest.param(BASE + "deepspeed: deepspeed_configs/zero2.json\nfsdp_config:\n  offload_params: true\n",
                 ("fsdp_config",), 7, "choose FSDP", None, id="deepspeed-and-fsdp"),
    pytest.param(BASE + "val_set_size: 0.1\ntest_datasets:\n  - path: tatsu-lab/alpaca\n    type: alpaca\n",
                 ("val_set_size",), 6, "test_datasets", "(got 0.1)", id="val-set-size-and-test-datasets"),
    pytest.param(BASE + "flash_attention: true\nsdp_attention: true\n",
                 ("sdp_attention",), 7, "keep exactly one of: flash_attention, sdp_attention", None,
                 id="two-attention-flags"),
    pytest.param(BASE + "eval_steps: 10\nevals_per_epoch: 2\n",
                 ("evals_per_epoch",), 7, "set only one", "eval_steps", id="eval-steps-and-evals-per-epoch"),
    pytest.param(BASE + "warmup_steps: 10\nwarmup_ratio: 0.1\n",
                 ("warmup_ratio",), 7, "set only one", "warmup_steps", id="warmup-steps-and-ratio"),
    pytest.param(BASE + "fp16: true\nbf16: true\n",
                 ("fp16",), 6, "choose one mixed precision", "bf16", id="fp16-and-bf16"),
    pytest.param(BASE + "lora_r: 16\nlora_alpha: 32\n",
                 ("lora_r",), 6, "set `adapter: lora`", "lora_alpha", id="lora-keys-without-adapter"),
    pytest.param(BASE + "load_in_4bit: true\n",
                 ("load_in_4bit",), 6, "set `adapter: qlora`", None, id="4bit-without-qlora"),
    pytest.param(BASE + "adapter: qlora\n",
                 ("adapter",), 6, "add `load_in_4bit: true`", "(got 'qlora')", id="qlora-without-4bit"),
    pytest.param(BASE + "dpo_loss_type: [ipo]\n",
                 ("dpo_loss_type",), 6, "set `rl: dpo`", "sft", id="dpo-loss-type-without-dpo"),
    pytest.param(DPO_BASE + "dpo_loss_type: [sigmoid, ipo]\ndpo_loss_weights: [1.0]\n",
                 ("dpo_loss_weights",), 8, "one weight per entry of `dpo_loss_type`", "(got [1.0])",
                 id="dpo-loss-weights-length"),
    pytest.param(DPO_BASE + "dpo_loss_type: [sigmod]\n",
                 ("dpo_loss_type", 0), 7, "did you mean `sigmoid`?", "sigmod", id="unknown-dpo-loss"),
    pytest.param(GRPO_BASE + "micro_batch_size: 6\n",
                 ("micro_batch_size",), 10, "use micro_batch_size 4 or a multiple", "(got 6)",
                 id="grpo-batch-not-divisible"),
    pytest.param(BASE + "streaming: true\n",
                 ("streaming",), 6, "max_steps", None, id="streaming-without-max-steps"),
    pytest.param(BASE + "pretraining_dataset: allenai/c4\n",
                 ("pretraining_dataset",), 6, "max_steps", None, id="pretraining-without-max-steps"),
]


@pytest.mark.parametrize(("text", "path", "line", "fix", "shows"), CONFLICT_CASES)
def test_conflicting_keys(text: str, path: tuple[str | int, ...], line: int, fix: str, shows: str | None) -> None:
    err = config_error(text)
    assert_reported(err, path, line, fix, shows)
    assert len(err.issues) == 1, str(err)


def test_conflicts_disappear_when_resolved() -> None:
    """The fixes the hints suggest make the configs load."""
    load(BASE + "warmup_steps: 10\n")
    load(BASE + "adapter: qlora\nload_in_4bit: true\nlora_r: 16\n")
    load(BASE + "streaming: true\nmax_steps: 100\n")
    load(GRPO_BASE + "micro_batch_size: 8\n")
    load(DPO_BASE + "dpo_loss_type: [sigmoid, ipo]\ndpo_loss_weights: [1.0, 0.5]\n")


# -------------------------------------------------------------------------------------------
# problems with the file itself
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "location", "problem"), [
    pytest.param(BASE.replace("    type: alpaca", "   type: alpaca"), "cfg.yml:5:4", "expected <block end>",
                 id="bad-indentation"),
    pytest.param(BASE + "\tsequence_len: 512\n", "cfg.yml:6:1", "'\\t'", id="tab"),
    pytest.param(BASE + "chat_template: 'chatml\nsequence_len: 512\n", "cfg.yml:8:1", "end of stream",
                 id="unclosed-quote"),
])
def test_yaml_syntax_error_has_line_and_column(text: str, location: str, problem: str) -> None:
    err = config_error(text)
    assert len(err.issues) == 1
    issue = err.issues[0]
    assert issue.location == location
    assert issue.message.startswith("YAML syntax error")
    assert problem in issue.message
    assert "fix the YAML syntax" in (issue.hint or "")
    assert f"{location}: " in str(err)


def test_yaml_missing_colon_points_at_the_key_line() -> None:
    err = config_error(BASE + "micro_batch_size 4\nsequence_len: 512\n")
    issue = err.issues[0]
    assert issue.location is not None and issue.location.startswith("cfg.yml:6:"), issue.location
    assert "':'" in str(err)


def test_duplicate_key_names_both_lines() -> None:
    err = config_error(BASE + "learning_rate: 0.001\n")
    issue = assert_reported(err, ("learning_rate",), 6, "keep one of them")
    assert "lines 2 and 6" in issue.message


def test_duplicate_key_in_dataset_entry_names_both_lines() -> None:
    err = config_error(BASE + "    path: yahma/alpaca-cleaned\n")
    issue = assert_reported(err, ("datasets", 0, "path"), 6, "keep one of them")
    assert "lines 4 and 6" in issue.message


def test_all_duplicate_keys_reported() -> None:
    err = config_error(BASE + "learning_rate: 0.001\nbase_model: other/model\n")
    assert [i.location for i in err.issues] == ["cfg.yml:6", "cfg.yml:7"]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "---\n"])
def test_empty_config(text: str) -> None:
    err = config_error(text)
    assert len(err.issues) == 1
    assert "the config is empty" in err.issues[0].message
    assert err.issues[0].hint
    assert str(err).startswith("cfg.yml: 1 problem found")


@pytest.mark.parametrize(("text", "found"), [("- base_model: x\n- learning_rate: 0.1\n", "list"),
                                             ("just a string\n", "str")])
def test_top_level_must_be_a_mapping(text: str, found: str) -> None:
    err = config_error(text)
    assert len(err.issues) == 1
    assert "must be a mapping of keys to values" in err.issues[0].message
    assert f"found a {found}" in err.issues[0].message


def test_missing_base_model() -> None:
    err = config_error(BASE.replace("base_model: HuggingFaceTB/SmolLM2-135M\n", ""))
    # the key is absent, so there is no line to point at: the location is the file
    assert_reported(err, ("base_model",), None, "add `base_model:`", "required key is missing")


def test_blank_base_model_points_at_its_line() -> None:
    err = config_error(BASE.replace("base_model: HuggingFaceTB/SmolLM2-135M", "base_model:"))
    assert_reported(err, ("base_model",), 1, "add `base_model:`")


def test_empty_base_model_message_is_readable() -> None:
    err = config_error(BASE.replace("base_model: HuggingFaceTB/SmolLM2-135M", "base_model: ''"))
    issue = find_issue(err, ("base_model",))
    assert issue.location == f"{SOURCE}:1"
    assert "String should" not in issue.message
    assert "empty" in f"{issue.message} {issue.hint}"


# -------------------------------------------------------------------------------------------
# sources: files and URLs
# -------------------------------------------------------------------------------------------


def test_file_errors_use_the_file_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.yml"
    path.write_text(BASE + "micro_batch_size: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=Environment())
    issue = find_issue(info.value, ("micro_batch_size",))
    assert issue.location == f"{path}:6"
    assert f"{path}:6: `micro_batch_size`" in str(info.value)


@pytest.mark.parametrize(("name", "hint"), [("missing.yml", "check the path"),
                                             ("missing", ".yml/.yaml config file")])
def test_missing_config_file(tmp_path: Path, name: str, hint: str) -> None:
    path = tmp_path / name
    with pytest.raises(ConfigError) as info:
        load_config(path, env=Environment())
    err = info.value
    assert err.source == str(path)
    assert "config file not found" in err.issues[0].message
    assert hint in (err.issues[0].hint or "")
    assert str(path) in str(err)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=Environment())
    assert "directory" in info.value.issues[0].message


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep proxies configured in the environment from intercepting local URLs."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


def test_unreachable_url(no_proxy: None) -> None:
    url = "https://127.0.0.1:9/x.yml"
    with pytest.raises(ConfigError) as info:
        load_config(url, env=Environment())
    err = info.value
    assert err.source == url
    assert "could not fetch" in err.issues[0].message
    assert "download the file" in (err.issues[0].hint or "")
    assert str(err).startswith(url)


def test_plain_http_to_remote_host_is_refused() -> None:
    url = "http://example.com/config.yml"
    with pytest.raises(ConfigError) as info:
        load_config(url, env=Environment())
    issue = info.value.issues[0]
    assert "insecure URL" in issue.message
    assert "https://" in (issue.hint or "")


class _Handler(http.server.BaseHTTPRequestHandler):
    pages = {
        "/cfg.yml": ("text/yaml", BASE + "micro_batch_size: 0\n"),
        "/page": ("text/html; charset=utf-8", "<html><body>not yaml</body></html>"),
    }

    def do_GET(self) -> None:  # noqa: N802
        if self.path not in self.pages:
            self.send_error(404, "Not Found")
            return
        content_type, body = self.pages[self.path]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local_server(no_proxy: None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_local_http_url_errors_have_lines(local_server: str) -> None:
    url = f"{local_server}/cfg.yml"
    with pytest.raises(ConfigError) as info:
        load_config(url, env=Environment())
    issue = find_issue(info.value, ("micro_batch_size",))
    assert issue.location == f"{url}:6"


def test_url_not_found(local_server: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(f"{local_server}/nope.yml", env=Environment())
    issue = info.value.issues[0]
    assert "could not fetch" in issue.message and "404" in issue.message
    assert "raw YAML" in (issue.hint or "")


def test_url_returning_html(local_server: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(f"{local_server}/page", env=Environment())
    issue = info.value.issues[0]
    assert "HTML page" in issue.message
    assert "raw" in (issue.hint or "")


# -------------------------------------------------------------------------------------------
# command-line overrides
# -------------------------------------------------------------------------------------------


def test_override_typo_points_at_the_command_line() -> None:
    err = config_error(BASE, overrides=["--learnig-rate", "1e-4"])
    issue = find_issue(err, ("learnig_rate",))
    assert issue.location == "command line (--learnig-rate)"
    assert issue.hint == "did you mean `--learning-rate`?"
    assert "command line (--learnig-rate): `learnig_rate`: unknown key" in str(err)


def test_override_typo_in_nested_key() -> None:
    err = config_error(BASE, overrides=["--trl.num-generation", "4"])
    issue = find_issue(err, ("trl", "num_generation"))
    assert issue.location == "command line (--trl.num-generation)"
    assert issue.hint == "did you mean `--trl.num-generations`?"


def test_override_bad_value_points_at_the_command_line() -> None:
    err = config_error(BASE + "micro_batch_size: 4\n", overrides=["--micro-batch-size=abc"])
    issue = find_issue(err, ("micro_batch_size",))
    assert issue.location == "command line (--micro-batch-size)"
    assert "a whole number" in issue.message
    assert issue.value == "abc"


def test_strict_refuses_overrides_of_keys_not_in_the_file() -> None:
    err = config_error(BASE + "strict: true\n", overrides=["--micro-batch-size", "2"])
    issue = find_issue(err, ("micro_batch_size",))
    assert issue.location == "command line (--micro-batch-size)"
    assert "`strict: true`" in issue.message
    assert "remove `strict: true`" in (issue.hint or "")


def test_strict_allows_overrides_of_keys_in_the_file() -> None:
    loaded = load(BASE + "strict: true\n", overrides=["--learning-rate", "1e-4"])
    assert loaded.cfg.learning_rate == pytest.approx(1e-4)


def test_override_without_dashes_is_refused() -> None:
    err = config_error(BASE, overrides=["learning_rate=0.1"])
    assert "unexpected argument" in err.issues[0].message
    assert "--learning-rate" in (err.issues[0].hint or "")


# -------------------------------------------------------------------------------------------
# every problem at once
# -------------------------------------------------------------------------------------------

MULTI_ERROR = (
    "base_model: HuggingFaceTB/SmolLM2-135M\n"  # 1
    "learnin_rate: 0.0002\n"  # 2  typo
    "micro_batch_size: 0\n"  # 3  out of range
    "datasets:\n"  # 4
    "  - path: tatsu-lab/alpaca\n"  # 5
    "    type: alpacca\n"  # 6  unknown dataset type
    "    spilt: train\n"  # 7  typo in entry
    "optimizer: adamw_torh\n"  # 8  unknown optimizer
    "lr_scheduler: cosin\n"  # 9  unknown scheduler
    "lora_r: 8\n"  # 10 lora without adapter
    "gpu_memory_utilization: 0.9\n"  # 11 flattened vllm key
    "bf16: atuo\n"  # 12 bad literal
    "relora: true\n"  # 13 not supported yet
)


def test_all_problems_reported_at_once_sorted_by_line() -> None:
    err = config_error(MULTI_ERROR)
    expected = {
        ("learnin_rate",): 2, ("micro_batch_size",): 3, ("datasets", 0, "type"): 6,
        ("datasets", 0, "spilt"): 7, ("optimizer",): 8, ("lr_scheduler",): 9, ("lora_r",): 10,
        ("gpu_memory_utilization",): 11, ("bf16",): 12, ("relora",): 13,
    }
    assert len(err.issues) >= 5
    for path, line in expected.items():
        assert find_issue(err, path).location == f"{SOURCE}:{line}"
    lines = [line_of(i) for i in err.issues if line_of(i) is not None]
    assert lines == sorted(lines)
    assert len(lines) >= len(expected)
    # issues without a line (keys absent from the file) come last
    located = [line_of(i) is not None for i in err.issues]
    assert located == sorted(located, reverse=True)
    rendered = str(err)
    assert rendered.startswith(f"{SOURCE}: {len(err.issues)} problems found")
    positions = [rendered.index(f"{SOURCE}:{line}: ") for line in sorted(expected.values())]
    assert positions == sorted(positions)


def test_errors_and_warnings_are_separate() -> None:
    err = config_error(BASE + "dpo_beta: 0.1\nmicro_batch_size: 0\n")
    assert all(i.severity == "error" for i in err.issues)
    assert [i.path for i in err.issues] == [("micro_batch_size",)]


# -------------------------------------------------------------------------------------------
# messages that should be better
# -------------------------------------------------------------------------------------------


def test_unknown_upstream_plugin_is_not_matched_to_an_unrelated_plugin() -> None:
    text = BASE + "plugins:\n  - axolotl.integrations.llm_compressor.LLMCompressorPlugin\n"
    err = config_error(text)
    issue = assert_reported(err, ("plugins", 0), 7, "not supported yet")
    assert "did you mean" not in (issue.hint or "")


def test_bad_value_does_not_cause_follow_on_errors() -> None:
    err = config_error(BASE + "load_in_4bit: yes_please\nadapter: qlora\n")
    assert_reported(err, ("load_in_4bit",), 6, "true or false", "(got 'yes_please')")
    assert len(err.issues) == 1, str(err)


def test_rule_on_defaulted_key_points_at_a_line() -> None:
    err = config_error(GRPO_BASE)
    issue = find_issue(err, ("micro_batch_size",))
    # the `trl.num_generations` line (8) or the `rl: grpo` line (3), not just the file name
    assert issue.location in (f"{SOURCE}:8", f"{SOURCE}:3"), issue.location
