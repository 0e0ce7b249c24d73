"""Preference datasets (`rl: dpo | ipo | orpo | simpo | kto`): rows rendered into the TEXT columns
the TRL trainers read, then cached like SFT data.

- `base.py`: the output columns per kind of method, the context, field helpers
- `registry.py`: `type:` name -> format, one table for pairwise methods and one for KTO
- one module per family: `chatml.py`, `llama3.py` (layouts in `turns.py`), `zephyr.py`,
  `chat_template.py`, `user_defined.py`, `passthrough.py`
- `pipeline.py`: `prepare_preference_datasets(cfg, tokenizer) -> PreparedData`
- `debug.py`: `preprocess --debug` view (prompt tokens masked, response tokens trained)
"""

from axolotl.data.preference.base import preference_kind
from axolotl.data.preference.pipeline import prepare_preference_datasets

__all__ = ["preference_kind", "prepare_preference_datasets"]
