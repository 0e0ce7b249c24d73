"""Built-in EBFT dataset transforms, named in configs as `type: <module>.<function>`.

Each module follows the transform protocol of `axolotl.data.grpo` (`function(cfg, **kwargs)`
returns `(row_function, {"remove_columns": "__all__"})`; the row function takes the row and
`tokenizer=`). Structured transforms produce `prompt` + `ground_truth`; strided transforms
produce `input_ids`, `labels` (-100 on the prompt) and `prompt_length`. `axolotl.data.ebft`
resolves these names before looking for a module of the user's.
"""

BUILTIN_PACKAGE = __name__
