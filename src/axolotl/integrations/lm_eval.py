"""`plugins: [axolotl.integrations.lm_eval.LMEvalPlugin]`: adds the `lm_eval_*` keys, which
`axolotl lm-eval CONFIG` reads (`axolotl.models.lm_eval`). It changes nothing in training."""

from __future__ import annotations

from axolotl.config.schema.integrations import LMEvalArgs
from axolotl.integrations.base import Plugin


class LMEvalPlugin(Plugin):
    """Keys only: evaluation runs as its own command after training."""

    args = LMEvalArgs
