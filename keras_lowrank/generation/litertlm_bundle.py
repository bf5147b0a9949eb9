"""The `.litertlm` file: LiteRT-LM's bundle of model, tokenizer and metadata.

Written with `litert-lm-builder`: an `LlmMetadata` proto (start token,
stop tokens, context length, jinja chat template, a generic model type),
the model's Hugging Face `tokenizer.json` (which the builder compresses),
and the TFLite model as `PREFILL_DECODE`. `read_bundle_metadata` reads the
proto back with the same package, for tests and for `describe`-like use.
"""

import contextlib
import dataclasses
import os
import tempfile

_BUILDER_PIP = "pip install 'litert-lm-builder==0.18.1'"


@dataclasses.dataclass(frozen=True)
class BundleMetadata:
    """What a `.litertlm` bundle tells the runtime about its model.

    Args:
        start_token_id: int. Prepended by the runtime to every prompt.
        stop_token_ids: tuple of int. Generation stops at any of them.
        max_num_tokens: int. The context: prompt plus generated tokens.
        chat_template: str or None. The jinja template the Conversation API
            renders (`litertlm_template.runtime_template` of the model's).
    """

    start_token_id: int
    stop_token_ids: tuple
    max_num_tokens: int
    chat_template: str | None = None


def _builder():
    try:
        import litert_lm_builder
        from litert_lm_builder.runtime.proto import llm_metadata_pb2
    except ImportError as error:
        raise ImportError(
            f"litert-lm-builder is required to write .litertlm files: "
            f"{_BUILDER_PIP}") from error
    return litert_lm_builder, llm_metadata_pb2


def metadata_proto(metadata):
    """`metadata` as LiteRT-LM's `LlmMetadata` proto message."""
    _, llm_metadata_pb2 = _builder()
    proto = llm_metadata_pb2.LlmMetadata()
    proto.start_token.token_ids.ids.append(int(metadata.start_token_id))
    for token in metadata.stop_token_ids:
        proto.stop_tokens.add().token_ids.ids.append(int(token))
    proto.max_num_tokens = int(metadata.max_num_tokens)
    if metadata.chat_template is not None:
        proto.jinja_prompt_template = metadata.chat_template
    proto.llm_model_type.generic_model.SetInParent()
    return proto


def write_bundle(path, flatbuffer, tokenizer, metadata):
    """Writes the `.litertlm` file at `path` (not atomically: the caller
    passes a temporary path).

    Args:
        path: str. The file to write.
        flatbuffer: bytes. The TFLite model (`litertlm_model`).
        tokenizer: str. The model's Hugging Face `tokenizer.json`.
        metadata: BundleMetadata.
    """
    builder_lib, _ = _builder()
    with tempfile.TemporaryDirectory(prefix="klr_litertlm_parts_") as folder:
        model = os.path.join(folder, "model.tflite")
        with open(model, "wb") as file:
            file.write(flatbuffer)
        proto = os.path.join(folder, "llm_metadata.pb")
        with open(proto, "wb") as file:
            file.write(metadata_proto(metadata).SerializeToString())
        # The builder compresses a tokenizer whose name ends in .json.
        json_copy = os.path.join(folder, "tokenizer.json")
        with open(tokenizer, "rb") as source, open(json_copy, "wb") as copy:
            copy.write(source.read())
        builder = builder_lib.LitertLmFileBuilder()
        builder.add_llm_metadata(proto)
        builder.add_hf_tokenizer(json_copy)
        builder.add_tflite_model(
            model, builder_lib.TfLiteModelType.PREFILL_DECODE)
        with open(path, "wb") as file:
            builder.build(file)


def read_bundle_metadata(path):
    """The `BundleMetadata` of the `.litertlm` file at `path`, and the kinds
    of its sections.

    Returns:
        `(BundleMetadata, sections)`: sections as a tuple of
        `(section_type, model_type or None)`, in file order.

    Raises:
        ValueError: the file holds no LLM metadata.
    """
    from google.protobuf import text_format

    _, llm_metadata_pb2 = _builder()
    with _unpacked(path) as (folder, toml_sections):
        sections = tuple((s.get("section_type"), s.get("model_type"))
                         for s in toml_sections)
        found = [s["data_path"] for s in toml_sections
                 if s.get("section_type") == "LlmMetadata"]
        if not found:
            raise ValueError(f"{path} holds no LLM metadata section: {sections}")
        with open(os.path.join(folder, found[0]), encoding="utf-8") as file:
            proto = text_format.Parse(file.read(), llm_metadata_pb2.LlmMetadata())
    metadata = BundleMetadata(
        start_token_id=_first_id(proto.start_token),
        stop_token_ids=tuple(_first_id(t) for t in proto.stop_tokens),
        max_num_tokens=int(proto.max_num_tokens),
        chat_template=(proto.jinja_prompt_template
                       if proto.HasField("jinja_prompt_template") else None),
    )
    return metadata, sections


@contextlib.contextmanager
def _unpacked(path):
    """`(folder, sections)`: the `.litertlm` file at `path` unpacked into a
    temporary folder, and its `model.toml` sections (dicts)."""
    import tomli

    builder_lib, _ = _builder()
    with tempfile.TemporaryDirectory(prefix="klr_litertlm_read_") as folder:
        with open(builder_lib.unpack(os.fspath(path), folder), "rb") as file:
            toml = tomli.load(file)
        yield folder, toml.get("section", [])


def _first_id(token):
    ids = list(token.token_ids.ids)
    return int(ids[0]) if ids else None


def read_bundle_model(path):
    """The bytes of the TFLite model (`PREFILL_DECODE`) of the `.litertlm`
    file at `path`.

    Raises:
        ValueError: the file holds no TFLite model.
    """
    with _unpacked(path) as (folder, sections):
        found = [s["data_path"] for s in sections
                 if s.get("model_type") is not None]
        if not found:
            raise ValueError(f"{path} holds no TFLite model section.")
        with open(os.path.join(folder, found[0]), "rb") as file:
            return file.read()
