"""`axolotl preprocess config.yml [--debug] [--debug-num-examples N]`: tokenize and cache the
datasets (legacy: `python -m axolotl.cli.preprocess config.yml`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from axolotl.cli.output import legacy_main, load_or_report


def run(config: str, overrides: Sequence[str] = (), debug: bool = False, debug_num_examples: int = 3) -> int:
    from axolotl.config.render import resolved_yaml
    from axolotl.data.debug import render_examples
    from axolotl.data.errors import DataError
    from axolotl.data.pipeline import prepare_datasets
    from axolotl.data.preference import preference_kind, prepare_preference_datasets
    from axolotl.data.preference.debug import render_preference_examples
    from axolotl.data.stats import render_stats
    from axolotl.models.tokenizer import load_tokenizer

    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    cfg = loaded.cfg
    if debug:
        print(f"# resolved config\n{resolved_yaml(cfg)}", file=sys.stderr)
    grpo = cfg.rl is not None and str(cfg.rl) == "grpo"
    ebft = cfg.rl is not None and str(cfg.rl) == "ebft"
    strided = ebft and cfg.ebft is not None and cfg.ebft.mode == "strided"
    try:
        tokenizer = load_tokenizer(cfg)
        preference = preference_kind(cfg) is not None
        if grpo:
            from axolotl.data.grpo import prepare_grpo_datasets

            prepared = prepare_grpo_datasets(cfg, tokenizer)
        elif ebft:
            from axolotl.data.ebft import prepare_ebft_datasets

            prepared = prepare_ebft_datasets(cfg, tokenizer)
        else:
            prepared = (prepare_preference_datasets if preference else prepare_datasets)(cfg, tokenizer)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    state = "reused" if prepared.stats.reused_cache else "saved"
    print(render_stats(prepared.stats))
    if debug and (grpo or (ebft and not strided)):  # prompts as generation sees them, with their other columns
        from axolotl.data.grpo import render_grpo_examples

        print(render_grpo_examples(tokenizer, prepared.train, debug_num_examples, cfg.trl.chat_template_kwargs))
    elif debug:
        show = render_preference_examples if preference else render_examples
        print(show(tokenizer, prepared.train, debug_num_examples, color=sys.stdout.isatty()))
    print(f"prepared data {state} at {prepared.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.preprocess CONFIG [--debug] [--key value ...]")
    debug = "--debug" in args
    rest = [a for a in args[1:] if a != "--debug"]
    raise SystemExit(run(args[0], rest, debug=debug))


if __name__ == "__main__":
    main()
