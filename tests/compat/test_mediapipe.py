"""One test per function of `keras_lowrank._compat.mediapipe` (mediapipe==1.2.2):
the packaging workaround, one stand-in module, and its value.

The minimum parser versions below are the C++ ones
(`mediapipe/tasks/cc/metadata/metadata_version.cc`): the largest "Added in"
version among the schema members a metadata buffer uses.
"""

import glob
import importlib
import importlib.util
import os
import sys

import flatbuffers
import pytest

from keras_lowrank._compat import mediapipe as mediapipe_compat

schema = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")


def _buffer(metadata):
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), b"M001")
    return bytes(builder.Output())


def _file(type_name, version=None):
    file = schema.AssociatedFileT()
    file.name = "f.txt"
    file.type = getattr(schema.AssociatedFileType, type_name)
    file.version = version
    return file


def _unit(options_name):
    unit = schema.ProcessUnitT()
    unit.optionsType = getattr(schema.ProcessUnitOptions, options_name)
    unit.options = getattr(schema, f"{options_name}T")()
    return unit


def _metadata(tensor=None, **subgraph_fields):
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [tensor or schema.TensorMetadataT()]
    for name, value in subgraph_fields.items():
        setattr(subgraph, name, value)
    metadata = schema.ModelMetadataT()
    metadata.subgraphMetadata = [subgraph]
    return metadata


def _tensor(files=(), units=()):
    tensor = schema.TensorMetadataT()
    tensor.associatedFiles = list(files) or None
    tensor.processUnits = list(units) or None
    return tensor


@pytest.mark.parametrize("metadata,version", [
    (_metadata(), "1.0.0"),
    (_metadata(_tensor([_file("TENSOR_AXIS_LABELS")])), "1.0.0"),
    (_metadata(_tensor([_file("VOCABULARY")])), "1.0.1"),
    (_metadata(inputProcessUnits=[_unit("BertTokenizerOptions")]), "1.1.0"),
    (_metadata(inputProcessUnits=[_unit("SentencePieceTokenizerOptions")]), "1.1.0"),
    (_metadata(_tensor(units=[_unit("RegexTokenizerOptions")])), "1.2.1"),
    (_metadata(inputTensorGroups=[schema.TensorGroupT()]), "1.2.0"),
    (_metadata(_tensor([_file("SCANN_INDEX_FILE")])), "1.4.0"),
    (_metadata(_tensor([_file("VOCABULARY", version="2")])), "1.4.1"),
    (_metadata(customMetadata=[schema.CustomMetadataT()]), "1.5.0"),
])
def test_minimum_parser_version_follows_the_schema(metadata, version):
    assert mediapipe_compat.minimum_parser_version(_buffer(metadata)) == version


def test_minimum_parser_version_of_audio_content_is_1_3():
    tensor = schema.TensorMetadataT()
    tensor.content = schema.ContentT()
    tensor.content.contentPropertiesType = schema.ContentProperties.AudioProperties
    tensor.content.contentProperties = schema.AudioPropertiesT()
    assert mediapipe_compat.minimum_parser_version(_buffer(_metadata(tensor))) == "1.3.0"


def test_minimum_parser_version_refuses_a_buffer_that_is_not_metadata():
    with pytest.raises(ValueError, match=r"expected the file identifier 'M001'"):
        mediapipe_compat.minimum_parser_version(b"\x00" * 16)


def test_install_stands_in_for_the_module_the_wheel_lacks():
    import mediapipe

    # What mediapipe's metadata module imports, and what the wheel lacks:
    # when this fails, mediapipe ships the module again; drop the stand-in.
    source = importlib.util.find_spec("mediapipe.tasks.python.metadata.metadata")
    with open(source.origin) as file:
        text = file.read()
    assert ("from mediapipe.tasks.cc.metadata.python import "
            "_pywrap_metadata_version") in text
    assert "_pywrap_metadata_version.GetMinimumMetadataParserVersion(" in text
    shipped = glob.glob(os.path.join(
        mediapipe.__path__[0], "tasks", "cc", "**", "_pywrap_metadata_version*"),
        recursive=True)
    assert shipped == []
    assert mediapipe_compat.install() in (True, False)
    module = sys.modules[mediapipe_compat.MISSING_MODULE]
    # The wheels checked lack the compiled module: the stand-in is in place.
    assert getattr(module, "__klr_stand_in__", False)
    assert module.GetMinimumMetadataParserVersion is (
        mediapipe_compat.minimum_parser_version
    )
    assert mediapipe_compat.install() is True  # idempotent


def test_text_classifier_writer_is_mediapipes():
    writer = mediapipe_compat.text_classifier_writer()
    assert writer.__name__ == "MetadataWriter"
    assert writer.__module__ == (
        "mediapipe.tasks.python.metadata.metadata_writers.text_classifier")
    assert callable(writer.create_for_bert_model)


def test_metadata_module_is_mediapipes():
    module = mediapipe_compat.metadata_module()
    assert module.__name__ == "mediapipe.tasks.python.metadata.metadata"
    assert hasattr(module, "MetadataPopulator")
    assert hasattr(module, "MetadataDisplayer")


def test_metadata_module_populates_with_the_stand_ins_version():
    """mediapipe's own writer and populator, through the stand-in: the
    metadata of a BERT text classifier says parser 1.1.0 (BertTokenizerOptions,
    input process units), and its vocabulary and labels are packed."""
    import json

    import tensorflow as tf

    from keras_lowrank.exporters.mediapipe_text import TokenizerFiles
    from keras_lowrank.exporters.mediapipe_text import populate_metadata

    spec = tf.TensorSpec((1, 4), tf.int32)

    @tf.function(input_signature=[spec, spec, spec])
    def model(ids, mask, segment):
        return tf.cast(ids[:, :2], tf.float32)

    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model
    ).convert()
    vocabulary = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "word")
    populated = populate_metadata(
        flatbuffer, TokenizerFiles("wordpiece", vocabulary=vocabulary),
        ["no", "yes"], ("ids", "mask", "segment"),
    )
    displayer = mediapipe_compat.metadata_module().MetadataDisplayer
    reader = displayer.with_model_buffer(populated)
    assert json.loads(reader.get_metadata_json())["min_parser_version"] == "1.1.0"
    assert reader.get_associated_file_buffer("vocab.txt").decode().split("\n") == list(vocabulary)
    assert reader.get_associated_file_buffer("labels.txt") == b"no\nyes"


def test_text_classifier_module_needs_no_stand_in():
    module = mediapipe_compat.text_classifier_module()
    assert module is importlib.import_module(
        "mediapipe.tasks.python.text.text_classifier"
    )
