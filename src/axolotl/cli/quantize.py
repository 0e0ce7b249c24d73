"""`axolotl quantize config.yml [--base-model M] [--key value ...]` (legacy:
`python -m axolotl.cli.quantize config.yml [--base_model=M]`).

Post-training quantisation with torchao as the `quantization:` block (or, for a model trained
with QAT, the `qat:` block) describes; the model and tokenizer go to `output_dir/quantized`.
Exit codes: 0 quantised and saved; 1 bad config, an unsupported dtype combination, a scheme
this machine cannot run (e.g. CUDA-only on CPU) or torchao missing; 2 a key not supported yet.
"""

from __future__ import annotations

from typing import Sequence

from axolotl.cli.output import legacy_main, load_or_report, run_or_report


def run(config: str, overrides: Sequence[str] = (), *, base_model: str | None = None) -> int:
    """Quantise as the config describes; problems are printed, never raised as tracebacks."""
    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    from axolotl.models.quantize import quantize

    result, code = run_or_report(config, lambda: quantize(loaded.cfg, base_model))  # QuantizationError is a ValueError
    if result is None:
        return code
    print(f"quantized {result.source} ({result.plan.describe()}); saved to {result.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.quantize CONFIG [--base_model=M] [--key value ...]")
    base_model: str | None = None
    rest: list[str] = []
    for arg in args[1:]:
        key, _, value = arg.lstrip("-").partition("=")
        if key.replace("-", "_") == "base_model" and value:
            base_model = value
        else:
            rest.append(arg)
    raise SystemExit(run(args[0], rest, base_model=base_model))


if __name__ == "__main__":
    main()
