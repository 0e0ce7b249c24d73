"""`axolotl merge-lora config.yml [--lora-model-dir D] [--force]` (legacy:
`python -m axolotl.cli.merge_lora config.yml [--lora_model_dir=D]`).

Writes the base model with the adapter merged in, and its tokenizer, to `output_dir/merged`.
Exit codes: 0 merged; 1 bad config, adapter or target (e.g. a different model already there
without `--force`); 2 an adapter feature whose merge is not supported yet.
"""

from __future__ import annotations

import sys
from typing import Sequence

from axolotl.cli.output import EXIT_NOT_SUPPORTED, legacy_main, load_or_report


def run(config: str, overrides: Sequence[str] = (), *, lora_model_dir: str | None = None,
        force: bool = False) -> int:
    """Merge as the config describes; problems are printed with their path, never as tracebacks."""
    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    import torch

    from axolotl.data.errors import DataError
    from axolotl.models.merge import plan_merge, run_merge

    cfg = loaded.cfg
    try:
        plan = plan_merge(cfg, lora_model_dir, force)
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"merging the adapter in {plan.adapter_dir} into {cfg.base_model} ...", file=sys.stderr)
        target = run_merge(cfg, plan)
    except NotImplementedError as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    except torch.cuda.OutOfMemoryError:
        print(f"error: {config}: out of GPU memory while merging; set `lora_on_cpu: true` or `gpu_memory_limit` "
              "(the rest goes to CPU RAM), or run with CUDA_VISIBLE_DEVICES=\"\" to merge on CPU", file=sys.stderr)
        return 1
    except (DataError, ValueError, ImportError, OSError) as error:  # OSError: FileNotFound/FileExists too
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    print(f"merged model saved to {target}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.merge_lora CONFIG [--lora_model_dir=DIR] [--force]")
    lora_model_dir: str | None = None
    force = False
    rest: list[str] = []
    for arg in args[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        if key.replace("-", "_") == "lora_model_dir" and value:
            lora_model_dir = value
        elif arg == "--force":
            force = True
        else:
            rest.append(arg)
    raise SystemExit(run(args[0], rest, lora_model_dir=lora_model_dir, force=force))


if __name__ == "__main__":
    main()
