"""Datasets of reward models.

- `bradley_terry`: preference pairs (`type: bradley_terry.chat_template`) for `reward_model: true`,
  prepared by `pairs.prepare_pairs` into `chosen_ids` / `rejected_ids` rows.
- `stepwise`: step-labelled reasoning traces (`type: stepwise_supervised`) for
  `process_reward_model: true`; a prompt strategy of the SFT pipeline, since its rows are
  `input_ids` + per-token `labels` like SFT rows (a step's 0/1 label on its separator token).
"""
