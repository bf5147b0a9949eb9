"""Hugging Face module names <-> keras-hub layer paths, one table per family.

A model family (`bert.py`, `llama.py`, `gpt2.py`) is a `FamilyMap`: which
keras-hub backbone it is, and the keras-hub layer path(s) of each HF module
PEFT can adapt, as keras-hub's converter ports them. `ModuleTable` expands
a family's templates over a model's layers and answers both directions.

Every HF weight the families map becomes a kernel whose matrix view
(`KernelLayout.to_matrix`) is the HF `(in, out)` matrix (the `Linear` weight
transposed, or GPT-2's `Conv1D` weight as it is); a module with several
paths is fused in HF: its output columns are those of the paths, in order.
`tests/peft/test_name_maps.py` checks both facts per family against the HF
weights.
"""

import dataclasses

from keras_lowrank.surgery import layer_paths


@dataclasses.dataclass(frozen=True)
class FamilyMap:
    """How one HF model family's modules sit in its keras-hub models.

    Args:
        name: str. The family's name (`"bert"`).
        model_type: str. The `model_type` of its HF `config.json`.
        backbone_class: str. The keras-hub backbone class
            (`keras_hub.models.<name>`; subclasses count).
        layer_modules: `{HF name template: keras path templates}` of each
            transformer layer; `{i}` is the layer index. Names are relative to
            the HF base model (`BertModel`, `LlamaModel`, `GPT2Model`).
        model_modules: the same, for modules outside the layers.
        head_modules: the same, for a keras-hub task's head (names relative
            to the HF task model, e.g. `classifier`).
        task_prefix: str. Where the HF task model keeps the base model
            (`"bert."`): prefix of the base model's module names.
        fan_in_fan_out: bool. Whether HF stores these weights `(in, out)`.
        preset_arguments: `{keras-hub from_preset argument: HF config key}`
            that keras-hub's converter does not port itself.
    """

    name: str
    model_type: str
    backbone_class: str
    layer_modules: dict
    model_modules: dict = dataclasses.field(default_factory=dict)
    head_modules: dict = dataclasses.field(default_factory=dict)
    task_prefix: str = ""
    fan_in_fan_out: bool = False
    preset_arguments: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MappedModule:
    """One HF module and the keras-hub layer paths that hold its kernel.

    Args:
        name: str. The HF name, relative to the base model (a head's, to
            the task model).
        paths: tuple of str. keras layer paths; several for a fused module,
            in the order of its output columns.
        is_head: bool. A task head (`classifier`): no base-model prefix.
    """

    name: str
    paths: tuple
    is_head: bool = False

    def full_name(self, prefix):
        return self.name if self.is_head else prefix + self.name


class ModuleTable:
    """The HF modules of one keras-hub model, and where each one lives.

    Args:
        family: FamilyMap.
        model: the keras-hub backbone or task (adapted or not).

    Raises:
        ValueError: a path of the family's table is missing from `model`
            (a keras-hub version that names layers otherwise).
    """

    def __init__(self, family, model):
        self.family = family
        self.model = model
        self.layers = layer_paths.layer_paths(model)
        backbone = getattr(model, "backbone", None) or model
        num_layers = backbone.num_layers
        modules = {}
        for i in range(num_layers):
            for name, paths in family.layer_modules.items():
                name = name.format(i=i)
                modules[name] = MappedModule(name, tuple(p.format(i=i) for p in paths))
        for name, paths in family.model_modules.items():
            modules[name] = MappedModule(name, tuple(paths))
        if backbone is not model:
            for name, paths in family.head_modules.items():
                if all(p in self.layers for p in paths):
                    modules[name] = MappedModule(name, tuple(paths), is_head=True)
        for module in modules.values():
            for path in module.paths:
                if path not in self.layers:
                    raise ValueError(
                        f"keras_lowrank's {family.name} name map puts HF module "
                        f"'{module.name}' at keras layer path '{path}', which "
                        f"{type(model).__name__} '{model.name}' does not have "
                        "(a keras-hub version that names its layers otherwise)."
                    )
        self.modules = modules
        self._by_path = {
            path: (module, part)
            for module in modules.values()
            for part, path in enumerate(module.paths)
        }

    def module_at(self, path):
        """`(MappedModule, part index)` holding keras `path`, or None."""
        return self._by_path.get(path)

    def find(self, full_name, prefix):
        """The `MappedModule` with HF full name `full_name`, or None."""
        for module in self.modules.values():
            if module.full_name(prefix) == full_name:
                return module
        return None

    def prefix_of(self, full_names):
        """The base-model prefix under which most of `full_names` map.

        A module name is `prefix + relative name`, the prefix empty or ending
        in `.` (`bert.` in `BertForSequenceClassification`).
        """
        votes = {}
        for full in full_names:
            for module in self.modules.values():
                if module.is_head or not full.endswith(module.name):
                    continue
                prefix = full[: len(full) - len(module.name)]
                if prefix == "" or prefix.endswith("."):
                    votes[prefix] = votes.get(prefix, 0) + 1
        if not votes:
            return self.default_prefix()
        return max(sorted(votes, key=len), key=lambda p: votes[p])

    def default_prefix(self):
        """The prefix of the HF model matching this keras model's class."""
        is_task = getattr(self.model, "backbone", None) is not None
        return self.family.task_prefix if is_task else ""

    def full_names(self, prefix):
        return {module.full_name(prefix): module for module in self.modules.values()}

    def describe(self):
        """The mappable names, for error messages."""
        family = self.family
        names = [*family.layer_modules, *family.model_modules]
        names += [n for n in family.head_modules if n in self.modules]
        names = [n.replace("{i}", "<i>") for n in names]
        return (
            f"{family.name} modules {type(self.model).__name__} has a layer "
            f"for: {names} (<i> from 0 to "
            f"{(getattr(self.model, 'backbone', None) or self.model).num_layers - 1})"
        )
