"""`axolotl vllm-serve config.yml` (legacy: `python -m axolotl.cli.vllm_serve config.yml`).

Starts the vLLM server a GRPO run with `trl.use_vllm: true` (server mode) generates through, for
the config's `base_model`, with the `vllm:` block. The command line is TRL 1.16's
(`trl.scripts.vllm_serve.build_command`: vLLM's own `vllm serve` plus the flags its trainer
relies on: the NCCL weight-transfer engine that receives the trainer's weights, processed
log-probs for importance-sampling correction, dev mode for the weight and prefix-cache
endpoints), so the server speaks exactly the protocol of the installed TRL client.

| `vllm:` key                      | server argument                                       |
|----------------------------------|-------------------------------------------------------|
| host (default 127.0.0.1), port   | --host, --port                                        |
| tensor_parallel_size, data_parallel_size | --tensor-parallel-size, --data-parallel-size [1] |
| gpu_memory_utilization, dtype    | --gpu-memory-utilization, --dtype                     |
| max_model_len                    | --max-model-len                                       |
| enable_prefix_caching            | --enable-prefix-caching / --no-enable-prefix-caching  |
| enforce_eager                    | --enforce-eager                                       |
| reasoning_parser (enable_reasoning) | --reasoning-parser                                 |
| worker_extension_cls             | --worker-extension-cls                                |
| top-level base_model, revision_of_model, trust_remote_code | model, --revision, --trust-remote-code |

Refused (not supported yet): `vllm.serve_module` (a custom server script), `vllm.device` other
than `auto` (vLLM picks the platform itself). The server always serves the base weights; the
trainer pushes its current weights (an adapter merged in) before generating.

Exit codes: 1 for a bad config or a missing vLLM, 2 for a key not supported yet; otherwise the
process becomes the server.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from axolotl.cli.output import EXIT_NOT_SUPPORTED, legacy_main, print_config_error, print_warnings

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

DEFAULT_HOST = "127.0.0.1"
INSTALL_HINT = "vLLM is not installed: `pip install axolotl[vllm]` (needs a CUDA machine)"


class ServeConfigError(ValueError):
    """The `vllm:` block cannot be served as written."""


def unsupported_keys(cfg: AxolotlConfig) -> list[str]:
    """`vllm:` settings this command cannot honour yet, one message each."""
    vllm = cfg.vllm
    messages = []
    if vllm.serve_module:
        messages.append("`vllm.serve_module` is not supported yet (the server is TRL's `vllm serve` command line)")
    if vllm.device not in (None, "auto"):
        messages.append(f"`vllm.device: {vllm.device}` is not supported yet (vLLM picks its platform; use "
                        "CUDA_VISIBLE_DEVICES to choose GPUs)")
    return messages


def server_command(cfg: AxolotlConfig) -> list[str]:
    """The command line that serves `cfg` (starting with the Python executable)."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    vllm = cfg.vllm
    if vllm.enable_reasoning and not vllm.reasoning_parser:
        raise ServeConfigError("`vllm.enable_reasoning: true` needs `vllm.reasoning_parser` (e.g. deepseek_r1): "
                               "vLLM enables reasoning output by naming its parser")
    options = {
        "tensor_parallel_size": vllm.tensor_parallel_size, "data_parallel_size": vllm.data_parallel_size,
        "gpu_memory_utilization": vllm.gpu_memory_utilization, "dtype": vllm.dtype,
        "max_model_len": vllm.max_model_len, "enable_prefix_caching": vllm.enable_prefix_caching,
        "enforce_eager": vllm.enforce_eager, "revision": cfg.revision_of_model,
    }
    arguments = ScriptArguments(model=cfg.base_model, host=vllm.host or DEFAULT_HOST, port=vllm.port or 8000,
                                trust_remote_code=bool(cfg.trust_remote_code),
                                **{key: value for key, value in options.items() if value is not None})
    extra = []
    if vllm.reasoning_parser:
        extra += ["--reasoning-parser", vllm.reasoning_parser]
    if vllm.worker_extension_cls:
        extra += ["--worker-extension-cls", vllm.worker_extension_cls]
    return build_command(arguments, extra)


def port_mismatch(cfg: AxolotlConfig) -> str | None:
    """A warning when the trainer's `trl.vllm_server_port` was written and differs from `vllm.port`."""
    trl = cfg.trl
    if trl.explicitly_set("vllm_server_port") and trl.vllm_server_port != (cfg.vllm.port or 8000):
        return (f"warning: the server listens on port {cfg.vllm.port or 8000} (`vllm.port`) but the trainer will "
                f"connect to {trl.vllm_server_port} (`trl.vllm_server_port`)")
    return None


def run(config: str, overrides: Sequence[str] = ()) -> int:
    """Check the config, then replace this process with the vLLM server. Dataset files are not
    checked: the server needs only the model."""
    from axolotl.config.errors import ConfigError
    from axolotl.config.loader import load_config

    try:
        loaded = load_config(config, overrides, check_files=False)
    except ConfigError as error:
        print_config_error(error)
        return 1
    print_warnings(loaded.warnings)
    cfg = loaded.cfg
    refused = unsupported_keys(cfg)
    if refused:
        print(f"error: {config}: " + "; ".join(refused), file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    try:
        command = server_command(cfg)
    except ServeConfigError as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    if importlib.util.find_spec("vllm") is None:
        print(f"error: {config}: {INSTALL_HINT}", file=sys.stderr)
        return 1
    warning = port_mismatch(cfg)
    if warning:
        print(warning, file=sys.stderr)
    print("starting: VLLM_SERVER_DEV_MODE=1 " + shlex.join(command), file=sys.stderr, flush=True)
    os.execve(sys.executable, command, {**os.environ, "VLLM_SERVER_DEV_MODE": "1"})
    return 0  # not reached: execve replaces the process


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.vllm_serve CONFIG [--key value ...]")
    raise SystemExit(run(args[0], args[1:]))


if __name__ == "__main__":
    main()
