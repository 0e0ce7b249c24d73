"""`axolotl merge-sharded-fsdp-weights config.yml [--checkpoint-dir D] [--force]` (legacy:
`python -m axolotl.cli.merge_sharded_fsdp_weights config.yml [--checkpoint_dir=D]`).

Turns a sharded FSDP checkpoint (`pytorch_model_fsdp_0/`, one file per rank) into one safetensors
model with config and tokenizer in `output_dir/merged` (`axolotl.training.fsdp_merge`). Runs in one
process on the CPU, with no GPU and no process group.

Exit codes: 0 merged; 1 no such checkpoint, or a different model already in the target without
`--force`; 2 a checkpoint whose merge is not supported yet (LoRA).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from axolotl.cli.output import EXIT_NOT_SUPPORTED, legacy_main, load_or_report


def run(config: str, overrides: Sequence[str] = (), *, checkpoint_dir: str | None = None, force: bool = False) -> int:
    """Merge as the config says; problems are printed with their path, never as tracebacks."""
    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    from axolotl.training.fsdp_merge import merge_sharded_checkpoint, plan_sharded_merge

    try:
        plan = plan_sharded_merge(loaded.cfg, checkpoint_dir, force)
        print(f"merging the sharded checkpoint {plan.checkpoint} ...", file=sys.stderr)
        target = merge_sharded_checkpoint(loaded.cfg, plan)
    except NotImplementedError as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    except (ValueError, ImportError, OSError) as error:  # OSError: FileNotFound/FileExists too
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    print(f"merged model saved to {target}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.merge_sharded_fsdp_weights CONFIG [--checkpoint_dir=DIR] "
                             "[--force]")
    checkpoint_dir: str | None = None
    force = False
    rest: list[str] = []
    for arg in args[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        if key.replace("-", "_") == "checkpoint_dir" and value:
            checkpoint_dir = value
        elif arg == "--force":
            force = True
        else:
            rest.append(arg)
    raise SystemExit(run(args[0], rest, checkpoint_dir=checkpoint_dir, force=force))


if __name__ == "__main__":
    main()
