"""Model surgery: layer paths, and new copies of a model with layers swapped.

Internal. Every model operation of keras_lowrank (`add_adapters`,
`load_adapters`, `merge_adapters`, `compress`, `shrink_adapters`) is one
call to `rewriting.rewrite_model(model, replace)`.

- `layer_paths`: `{path: layer}` for every layer nested in a model.
- `layer_patterns`: which layers a pattern names.
- `checks`: the preconditions of a model operation.
- `swapping`: pointing every reference to one layer at another.
- `trainable_flags`: which layers and weights are frozen, copied over.
- `model_state`: the state keras_lowrank keeps on a model, in one place.
- `rewritten_model`: the class that lets a rewritten model save and load.
- `rewriting`: `copy_model` and `rewrite_model`.
"""
