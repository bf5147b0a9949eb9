"""Adapters on a whole model: add, save and load, merge, name, combine, shrink.

Internal modules; the public names are `klr.*` (see `keras_lowrank/__init__.py`).

- `config`: `LoRAConfig`, what `add_adapters` puts where.
- `adapted_model`: `add_adapters`, `adapter_paths`.
- `files`: `save_adapters`, `load_adapters`, `read_adapter_metadata`.
- `merge`: `merge_adapters`.
- `named`: several named adapters in one model.
- `weighted`: `add_weighted_adapter`.
- `routing`: `route_adapters`, one adapter per example.
- `shrinking`: `shrink_adapters`.
- `pissa`: PiSSA initialisation.
- `summary`: parameter counts.
"""
