"""The one place that works around a packaging defect of `mediapipe`.

`mediapipe.tasks.python.metadata.metadata` (imported by every metadata
writer) imports the compiled module
`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`, which no
recent wheel ships (checked: 0.10.35, 1.1.1, 1.2.2, 1.2.3). It is used for a
single value: the metadata's minimum parser version, the largest "Added in"
version among the schema members a metadata buffer uses
(`mediapipe/tasks/metadata/metadata_schema.fbs`, computed in C++ by
`mediapipe/tasks/cc/metadata/metadata_version.cc`).

`install()` registers a pure-Python stand-in under that module name, whose
`GetMinimumMetadataParserVersion(buffer)` gives the same value from the same
member versions, read from the flatbuffer with mediapipe's own generated
schema classes. It does nothing when the compiled module imports (a fixed
wheel). Everything else comes from mediapipe unchanged:
`text_classifier_writer()`, `metadata_module()` and
`text_classifier_module()` return its classes and modules. Each function has
a test of its own in `tests/compat/test_mediapipe.py`. Pinned:
mediapipe==1.2.2.
"""

import importlib
import sys
import types

from keras_lowrank.utils.optional import import_optional

# The module the wheels lack, and the function mediapipe calls on it.
MISSING_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
_STAND_IN_DOC = "keras_lowrank's stand-in: see keras_lowrank._compat.mediapipe."
_PURPOSE = "to write and run MediaPipe text-classifier artifacts"

# Members added to the metadata schema after 1.0.0, with the version that
# added them (the "Added in" comments of metadata_schema.fbs, as listed in
# metadata_version.cc). Metadata using none of them needs parser 1.0.0.
_BASE_VERSION = (1, 0, 0)
_ASSOCIATED_FILE_TYPE_VERSIONS = {"VOCABULARY": (1, 0, 1), "SCANN_INDEX_FILE": (1, 4, 0)}
_ASSOCIATED_FILE_VERSION_FIELD = (1, 4, 1)
_PROCESS_UNIT_VERSIONS = {
    "BertTokenizerOptions": (1, 1, 0),
    "SentencePieceTokenizerOptions": (1, 1, 0),
    "RegexTokenizerOptions": (1, 2, 1),
}
_SUBGRAPH_FIELD_VERSIONS = {
    "inputProcessUnits": (1, 1, 0),
    "outputProcessUnits": (1, 1, 0),
    "inputTensorGroups": (1, 2, 0),
    "outputTensorGroups": (1, 2, 0),
    "customMetadata": (1, 5, 0),
}
_AUDIO_PROPERTIES_VERSION = (1, 3, 0)


def minimum_parser_version(metadata_buffer) -> str:
    """The minimum metadata parser version for a `ModelMetadata` buffer.

    Args:
        metadata_buffer: bytes of a `ModelMetadata` flatbuffer (file
            identifier "M001").

    Returns:
        `"MAJOR.MINOR.PATCH"`: the largest version among the schema members
        the buffer uses, at least `"1.0.0"`.

    Raises:
        ValueError: if the buffer is not a `ModelMetadata` flatbuffer.
    """
    schema = _schema()
    buffer = bytearray(metadata_buffer)
    if not schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError(
            "Not a ModelMetadata flatbuffer: expected the file identifier "
            f"'M001'. Received: {bytes(buffer[4:8])!r}"
        )
    metadata = schema.ModelMetadataT.InitFromObj(
        schema.ModelMetadata.GetRootAs(buffer, 0)
    )
    versions = [_BASE_VERSION]
    for subgraph in metadata.subgraphMetadata or ():
        versions += _subgraph_versions(schema, subgraph)
    versions += _files_versions(schema, metadata.associatedFiles)
    return ".".join(str(part) for part in max(versions))


def install():
    """Makes `mediapipe.tasks.python.metadata` importable (see the module doc).

    Returns:
        True if the stand-in was registered, False if the compiled module
        exists and nothing was changed.

    Raises:
        MissingDependencyError: if mediapipe is not installed.
    """
    import_optional("mediapipe", _PURPOSE)
    if MISSING_MODULE in sys.modules:
        return getattr(sys.modules[MISSING_MODULE], "__klr_stand_in__", False)
    if _importable(MISSING_MODULE):
        return False
    # The wheel lacks the parent packages too (`mediapipe.tasks.cc`...):
    # each missing one becomes an empty package, then the module itself.
    parts = MISSING_MODULE.split(".")
    for depth in range(2, len(parts) + 1):
        name = ".".join(parts[:depth])
        if name in sys.modules or _importable(name):
            continue
        module = types.ModuleType(name, _STAND_IN_DOC)
        module.__klr_stand_in__ = True
        if depth < len(parts):
            module.__path__ = []
        else:
            module.GetMinimumMetadataParserVersion = minimum_parser_version
        sys.modules[name] = module
        setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], module)
    return True


def text_classifier_writer():
    """`mediapipe...metadata_writers.text_classifier.MetadataWriter`."""
    install()
    module = importlib.import_module(
        "mediapipe.tasks.python.metadata.metadata_writers.text_classifier"
    )
    return module.MetadataWriter


def metadata_module():
    """`mediapipe.tasks.python.metadata.metadata` (readers and populator)."""
    install()
    return importlib.import_module("mediapipe.tasks.python.metadata.metadata")


def text_classifier_module():
    """`mediapipe.tasks.python.text.text_classifier` (needs no stand-in)."""
    import_optional("mediapipe", _PURPOSE)
    return importlib.import_module("mediapipe.tasks.python.text.text_classifier")


def _importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _schema():
    import_optional("mediapipe", _PURPOSE)
    return importlib.import_module(
        "mediapipe.tasks.metadata.metadata_schema_py_generated"
    )


def _subgraph_versions(schema, subgraph):
    versions = []
    for tensors in (subgraph.inputTensorMetadata, subgraph.outputTensorMetadata):
        for tensor in tensors or ():
            versions += _files_versions(schema, tensor.associatedFiles)
            versions += _units_versions(schema, tensor.processUnits)
            content = tensor.content
            if (
                content is not None
                and content.contentPropertiesType
                == schema.ContentProperties.AudioProperties
            ):
                versions.append(_AUDIO_PROPERTIES_VERSION)
    versions += _files_versions(schema, subgraph.associatedFiles)
    for field, version in _SUBGRAPH_FIELD_VERSIONS.items():
        # An empty list is written as a present (empty) vector, as in C++.
        if getattr(subgraph, field) is not None:
            versions.append(version)
    versions += _units_versions(schema, subgraph.inputProcessUnits)
    versions += _units_versions(schema, subgraph.outputProcessUnits)
    return versions


def _files_versions(schema, files):
    versions = []
    for file in files or ():
        for name, version in _ASSOCIATED_FILE_TYPE_VERSIONS.items():
            if file.type == getattr(schema.AssociatedFileType, name):
                versions.append(version)
        if file.version is not None:
            versions.append(_ASSOCIATED_FILE_VERSION_FIELD)
    return versions


def _units_versions(schema, units):
    versions = []
    for unit in units or ():
        for name, version in _PROCESS_UNIT_VERSIONS.items():
            if unit.optionsType == getattr(schema.ProcessUnitOptions, name):
                versions.append(version)
    return versions
