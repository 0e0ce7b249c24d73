"""The `axolotl` command. Verbs import their implementation lazily so `--help` stays fast
(no torch, no transformers, no pydantic models at startup)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from axolotl import __version__
from axolotl.cli.pending import PENDING_VERBS, refuse

EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

app = typer.Typer(
    name="axolotl",
    help="Config-driven fine-tuning of large language models. Every command takes a YAML config "
         "(local path or https URL); any top-level key can be overridden as `--key value`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigArg = Annotated[str, typer.Argument(help="Path or https URL of the YAML config.")]
LauncherOption = Annotated[Optional[str], typer.Option(
    "--launcher", help="`python` (one process), `torchrun` or `accelerate` (one process per GPU; arguments "
                       "after `--` go to the launcher) [default: torchrun when several GPUs are visible, "
                       "else python].")]


def _launcher_args(ctx: typer.Context) -> list[str]:
    """What followed `--` on the command line (split off by `main`, since click would merge it into
    the config overrides)."""
    return list((ctx.obj or {}).get("launcher_args", ()))


def _version(value: bool) -> None:
    if value:
        print(f"axolotl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Config-driven fine-tuning of large language models."""


@app.command(context_settings=EXTRA_ARGS)
def validate(ctx: typer.Context, config: ConfigArg,
             quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only report problems.")] = False) -> None:
    """Check a config offline (schema, cross-field rules, reachable files) and print it resolved.

    Overrides such as `--learning-rate 1e-4` are applied first. Exit code 1 when there are problems.
    """
    from axolotl.cli.validate import run

    raise typer.Exit(run(config, ctx.args, quiet=quiet))


@app.command("config-schema")
def config_schema(output: Annotated[Optional[Path], typer.Option("--output", "-o",
                                                                 help="Write to this file instead of stdout.")] = None) -> None:
    """Print the JSON Schema of every config key."""
    from axolotl.cli.config_schema import run

    raise typer.Exit(run(output))


@app.command()
def fetch(
    kind: Annotated[str, typer.Argument(help="`examples` or `deepspeed_configs`.")],
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Target folder (default ./<kind>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that differ.")] = False,
) -> None:
    """Copy the bundled example configs or DeepSpeed configs (works offline)."""
    from axolotl.cli.fetch import run

    raise typer.Exit(run(kind, dest, force))


@app.command("agent-docs")
def agent_docs(topic: Annotated[Optional[str], typer.Argument(help="Topic; omit to list them.")] = None) -> None:
    """Print a concise reference (sft, preference, grpo, ebft, reward_modelling, pretraining)."""
    from axolotl.cli.agent_docs import run

    raise typer.Exit(run(topic))


@app.command(context_settings=EXTRA_ARGS)
def preprocess(
    ctx: typer.Context,
    config: ConfigArg,
    debug: Annotated[bool, typer.Option("--debug", help="Show examples token by token and statistics.")] = False,
    debug_num_examples: Annotated[int, typer.Option("--debug-num-examples", help="Examples shown with --debug.")] = 3,
) -> None:
    """Tokenize the datasets and cache them under `dataset_prepared_path`."""
    from axolotl.cli.preprocess import run

    raise typer.Exit(run(config, ctx.args, debug=debug, debug_num_examples=debug_num_examples))


@app.command(context_settings=EXTRA_ARGS)
def inference(
    ctx: typer.Context,
    config: ConfigArg,
    lora_model_dir: Annotated[Optional[str], typer.Option("--lora-model-dir", help="Adapter to load.")] = None,
    base_model: Annotated[Optional[str], typer.Option("--base-model", help="Model folder or id to load.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(
        "--max-new-tokens", help="Tokens to generate per reply [default: 128, or gradio_max_new_tokens with "
                                 "--gradio].")] = None,
    temperature: Annotated[Optional[float], typer.Option(
        "--temperature", help="0 = greedy decoding [default: 0, or gradio_temperature with --gradio].")] = None,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling (with temperature > 0).")] = 1.0,
    gradio: Annotated[bool, typer.Option("--gradio", help="Web chat in the browser (needs the `gradio` extra); "
                                                          "gradio_* keys set title, address and port.")] = False,
) -> None:
    """Chat with the trained model: piped stdin is one prompt, a terminal gives a prompt per line,
    `--gradio` serves a web chat (on 127.0.0.1 unless gradio_server_name is set)."""
    from axolotl.cli.inference import run

    raise typer.Exit(run(config, ctx.args, base_model=base_model, lora_model_dir=lora_model_dir,
                         max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, gradio=gradio))


@app.command("merge-lora", context_settings=EXTRA_ARGS)
def merge_lora(
    ctx: typer.Context,
    config: ConfigArg,
    lora_model_dir: Annotated[Optional[str], typer.Option(
        "--lora-model-dir", help="Adapter to merge [default: the config's lora_model_dir, else output_dir].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different model already in "
                                                        "output_dir/merged.")] = False,
) -> None:
    """Merge a LoRA adapter into its base model and save both as one model (with the tokenizer) to
    `output_dir/merged`. Works on CPU (`CUDA_VISIBLE_DEVICES=""`); `lora_on_cpu` and
    `gpu_memory_limit` in the config control where the merge runs.

    Exit code 1 for a bad config, adapter or target, 2 for an adapter that cannot be merged yet.
    """
    from axolotl.cli.merge_lora import run

    raise typer.Exit(run(config, ctx.args, lora_model_dir=lora_model_dir, force=force))


@app.command("merge-sharded-fsdp-weights", context_settings=EXTRA_ARGS)
def merge_sharded_fsdp_weights(
    ctx: typer.Context,
    config: ConfigArg,
    checkpoint_dir: Annotated[Optional[str], typer.Option(
        "--checkpoint-dir", help="A `pytorch_model_fsdp_0` folder or the checkpoint-N folder holding it [default: "
                                 "the final sharded save in output_dir, else the newest checkpoint-N].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different model already in "
                                                        "output_dir/merged.")] = False,
) -> None:
    """Merge a sharded FSDP checkpoint (`SHARDED_STATE_DICT`, one file per rank) into one safetensors
    model with config and tokenizer in `output_dir/merged`. Runs on CPU, in one process.

    Exit code 1 for a missing checkpoint or a protected target, 2 for a checkpoint that cannot be
    merged yet (LoRA).
    """
    from axolotl.cli.merge_sharded_fsdp_weights import run

    raise typer.Exit(run(config, ctx.args, checkpoint_dir=checkpoint_dir, force=force))


@app.command(context_settings=EXTRA_ARGS)
def train(
    ctx: typer.Context,
    config: ConfigArg,
    launcher: LauncherOption = None,
) -> None:
    """Fine-tune a model as the config describes and save it (with tokenizer, config, metrics.json).

    Overrides such as `--resume-from-checkpoint out/checkpoint-100` are applied first; arguments after
    `--` go to the launcher (`--launcher torchrun -- --nproc_per_node 2`). `--use-ray` (or `use_ray: true`)
    trains on `ray_num_workers` Ray Train workers instead (needs the `ray` extra). Exit code 1 for a bad
    config, data or a failed run; 2 for a feature that is not supported yet.
    """
    from axolotl.cli.train import run

    raise typer.Exit(run(config, ctx.args, launcher=launcher, launcher_args=_launcher_args(ctx)))


@app.command(context_settings=EXTRA_ARGS)
def evaluate(
    ctx: typer.Context,
    config: ConfigArg,
    launcher: LauncherOption = None,
    model: Annotated[str, typer.Option("--model", help="`auto`: the trained output in output_dir if there is "
                                                        "one, else base_model; `trained`; or `base`.")] = "auto",
    include_train: Annotated[bool, typer.Option("--include-train", help="Also evaluate the train split.")] = False,
) -> None:
    """Report loss and perplexity on the eval split (and the train split), through the data path and
    trainer of `train`; writes `eval_metrics.json` to output_dir.

    Exit code 1 for a bad config or data (e.g. no `val_set_size` / `test_datasets`), 2 for a
    feature that is not supported yet.
    """
    from axolotl.cli.evaluate import run

    raise typer.Exit(run(config, ctx.args, launcher=launcher, model=model, include_train=include_train,
                         launcher_args=_launcher_args(ctx)))


@app.command(context_settings=EXTRA_ARGS)
def quantize(
    ctx: typer.Context,
    config: ConfigArg,
    base_model: Annotated[Optional[str], typer.Option(
        "--base-model", help="Model folder or id to quantize [default: the model in output_dir, else "
                             "base_model].")] = None,
) -> None:
    """Post-training quantization with torchao as the `quantization:` (or `qat:`) block says; writes the
    model and tokenizer to `output_dir/quantized`. Needs the `torchao` extra.
    """
    from axolotl.cli.quantize import run

    raise typer.Exit(run(config, ctx.args, base_model=base_model))


@app.command("lm-eval", context_settings=EXTRA_ARGS)
def lm_eval(ctx: typer.Context, config: ConfigArg) -> None:
    """Run lm-evaluation-harness `lm_eval_tasks` on the trained model (or `lm_eval_model`); writes
    `output_dir/lm_eval_results.json`. Needs the `lm-eval` extra.
    """
    from axolotl.cli.lm_eval import run

    raise typer.Exit(run(config, ctx.args))


@app.command("vllm-serve", context_settings=EXTRA_ARGS)
def vllm_serve(ctx: typer.Context, config: ConfigArg) -> None:
    """Serve the config's base_model with vLLM for GRPO generation (`trl.use_vllm: true`, server mode),
    as the `vllm:` block says; binds to 127.0.0.1 unless `vllm.host` is set. Needs the `vllm` extra.

    Exit code 1 for a bad config or a missing vLLM, 2 for a `vllm:` key not supported yet.
    """
    from axolotl.cli.vllm_serve import run

    raise typer.Exit(run(config, ctx.args))


_PENDING_HELP = {
    "delinearize-llama4": "Convert a linearized Llama 4 checkpoint back to the standard layout.",
}


def _register_pending(verb: str) -> None:
    def command(ctx: typer.Context, config: Annotated[Optional[str], typer.Argument(
            help="Path or https URL of the YAML config.")] = None) -> None:
        refuse(verb)

    command.__doc__ = f"{_PENDING_HELP[verb]} [not implemented yet]"
    app.command(verb, context_settings=EXTRA_ARGS)(command)


for _verb in PENDING_VERBS:
    _register_pending(_verb)


QUIET_LOGGERS = ("torchao", "torch.utils._pytree")
"""Import-time warnings of optional packages that say nothing a user can act on: torchao's wheels
(0.15-0.18) log one warning per CUDA kernel a CPU-only torch cannot load, and torch (2.11-2.13)
logs a deprecation note about torchao's enums. transformers imports torchao whenever it is
installed, so without this every command on such a machine starts with four lines of noise.
Errors still show."""


def main() -> None:
    import logging

    from axolotl.cli.launch import split_passthrough

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    args, launcher_args = split_passthrough(sys.argv[1:])
    app(args=args, prog_name="axolotl", obj={"launcher_args": launcher_args})


if __name__ == "__main__":
    main()
