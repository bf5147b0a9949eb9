"""`GeneratorSpec`: what a generation artifact takes, declared once.

The exporter writes it into the artifact (TFLite model metadata, ONNX
`metadata_props`, under `METADATA_KEY`, as JSON); the runtime reads it back
to drive prefill and decode. Standard library only: the runtime loads this
module by path on machines without TensorFlow or Keras.
"""

import dataclasses
import json

METADATA_KEY = "keras_lowrank.generation"
SPEC_VERSION = 1
FORMATS = ("tflite", "onnx")


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    """The interface of a generation artifact (batch 1, float32 KV cache).

    Signatures (TFLite) or graph inputs (ONNX), each returning `logits`
    `(1, vocabulary_size)` float32 for the last real token and `next_cache`:
    - `prefill_<n>` for each `n` of `prefill_lengths` (TFLite): `token_ids`
      `(1, n)` int32 (the chunk, right-padded), `cache`,
      `cache_update_index` () int32 (where the chunk starts),
      `last_index` () int32 (the chunk's last real token).
    - `decode` (TFLite): `token_ids` `(1, 1)`, `cache`, `cache_update_index`.
    - ONNX: one graph with the prefill inputs and a dynamic length, `(1, t)`
      with `1 <= t`; decoding is the case `t = 1, last_index = 0`.

    Args:
        format: str. `"tflite"` or `"onnx"`.
        max_length: int. Positions in the cache: prompt plus generated
            tokens.
        prefill_lengths: tuple of int. The prefill chunk lengths, ascending
            (TFLite); `()` for ONNX, which takes any length.
        cache_shape: tuple of int. The `cache` input, keras-hub's layout
            `(1, num_layers, 2, max_length, num_key_value_heads, head_dim)`.
        vocabulary_size: int. The length of `logits`.
        stop_token_ids: tuple of int. Tokens that end generation.
        model: str. The class of the exported Keras model.
        adapters: tuple. With runtime adapters: per adapted layer,
            `(layer path, fan_in, rank, fan_out, scale)`; its factors are
            the inputs `adapter_input_names(i)` of every signature (`A`
            `(fan_in, rank)`, `B` `(rank, fan_out)`, float32), the delta
            `scale·(x·A)·B`. `()`: adapters merged, no such inputs.
        start_token_id: int or None. The token a text prompt starts with,
            as the model's keras-hub preprocessor prepends it (SmolLM2: 1,
            `<|im_start|>`): a runner encoding raw text puts it first.
            None: the model has none (or an artifact written before this
            field).
    """

    format: str
    max_length: int
    prefill_lengths: tuple
    cache_shape: tuple
    vocabulary_size: int
    stop_token_ids: tuple = ()
    model: str = ""
    adapters: tuple = ()
    start_token_id: int | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(
                f"Unrecognized format={self.format!r}. Supported formats "
                f"are: {list(FORMATS)}"
            )
        for name in ("prefill_lengths", "cache_shape", "stop_token_ids"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "adapters", tuple(
            (str(path), int(fan_in), int(rank), int(fan_out), float(scale))
            for path, fan_in, rank, fan_out, scale in self.adapters
        ))
        if self.start_token_id is not None:
            object.__setattr__(self, "start_token_id", int(self.start_token_id))
        if list(self.prefill_lengths) != sorted(set(self.prefill_lengths)):
            raise ValueError(
                "`prefill_lengths` must be ascending and distinct. Received: "
                f"{self.prefill_lengths}"
            )
        if self.cache_shape[3] != self.max_length:
            raise ValueError(
                f"cache_shape {self.cache_shape} does not hold max_length="
                f"{self.max_length} positions."
            )

    def adapter_shapes(self):
        """`{input name: shape}` of the factor inputs, in signature order."""
        shapes = {}
        for i, (_, fan_in, rank, fan_out, _) in enumerate(self.adapters):
            name_a, name_b = adapter_input_names(i)
            shapes[name_a], shapes[name_b] = (fan_in, rank), (rank, fan_out)
        return shapes

    def prompt_ids(self, text_ids) -> list:
        """The ids a raw text prompt runs as: `start_token_id` first (when
        the model has one), then the tokenizer's ids of the text, as the
        model's preprocessor gives them to Keras' `generate()`."""
        start = [] if self.start_token_id is None else [self.start_token_id]
        return start + [int(t) for t in text_ids]

    def to_json(self) -> str:
        return json.dumps({"version": SPEC_VERSION, **dataclasses.asdict(self)})

    @classmethod
    def from_json(cls, text, source="the artifact") -> "GeneratorSpec":
        """Parses `to_json`'s output; raises ValueError naming `source`."""
        try:
            fields = json.loads(text)
            version = fields.pop("version")
            if version != SPEC_VERSION:
                raise ValueError(f"version {version!r}, expected {SPEC_VERSION}")
            return cls(**fields)
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            raise ValueError(
                f"{source} has unreadable generation metadata ({error}); "
                "export it again with keras_lowrank.generation.export_generator."
            ) from None


def adapter_input_names(index):
    """The input names of adapted layer `index`'s factors `A` and `B`."""
    return f"lora_a_{index}", f"lora_b_{index}"
