"""Weight-only int4 / int8 `model.onnx` for ONNX Runtime GenAI folders.

`quantize_genai_model` rewrites the float `model.onnx` of a GenAI folder
with onnxruntime's own weight-only quantizer (`MatMulNBitsQuantizer`,
round to nearest, asymmetric, blocks of `BLOCK_SIZE` values along the
input dimension, one float32 scale and one zero point per block): each
MatMul with a constant 2-D weight becomes a `com.microsoft::MatMulNBits`
node, which GenAI's CPU provider runs. Activations, the KV cache, the
token embedding (a Gather) and the norms stay float32.

tf2onnx writes keras-hub's attention projections (EinsumDense) as a
`Gemm` on a reshaped weight, which that quantizer does not see. So the
graph is first constant-folded by onnxruntime's basic graph optimizations
(standard ONNX ops only, no hardware-specific fusions), and every `Gemm`
without a bias on a constant weight becomes the MatMul it is (the weight
transposed where `transB`): then all linear layers are quantized.

`GenAITeacherForcing` adds the teacher-forced steps `verify_generation`
needs to judge a quantized folder on next-token agreement (GenAI's
`append_tokens` feeds Keras' own continuation, `get_logits` gives the
next-token logits after it), as the LiteRT int8 generators are judged.
"""

import logging
import os
import tempfile

import numpy as np

from keras_lowrank.generation import export_arguments as arguments
from keras_lowrank.generation.onnx_genai_model import MODEL_FILE
from keras_lowrank.generation.onnx_genai_model import WEIGHTS_FILE
from keras_lowrank.utils.optional import MissingDependencyError
from keras_lowrank.utils.optional import import_optional

# export_onnx_genai's quantize modes: weight bits of MatMulNBits.
QUANTIZE_MODES = (None, "int4", "int8")
BITS = {"int4": 4, "int8": 8}
# Values per scale along a weight's input dimension (GenAI's builder's default).
BLOCK_SIZE = 32
# Over this many bytes of initializers, the weights go to model.onnx.data.
_INLINE_WEIGHT_BYTES = 1_800_000_000


def check_quantize(quantize, min_agreement):
    """Raises before any slow work: ValueError for a mode not in
    `QUANTIZE_MODES` or `min_agreement` outside [0, 1];
    MissingDependencyError when onnxruntime's quantizer cannot be imported."""
    arguments.check_quantize(quantize, min_agreement, QUANTIZE_MODES)
    if quantize is not None:
        _quantizer_class()


def quantize_genai_model(folder, quantize):
    """Replaces `folder/model.onnx` (and its `model.onnx.data`) by its
    weight-only `quantize` version.

    Args:
        folder: str. A GenAI folder being written (not yet in place).
        quantize: `"int4"` or `"int8"`.

    Returns:
        `(names, quantized_matmuls)`: the model's file names now,
        `model.onnx` first, and the number of MatMulNBits nodes.

    Raises:
        RuntimeError: the graph kept no MatMul to quantize.
    """
    onnx = import_optional("onnx", "to export ONNX")
    path = os.path.join(folder, MODEL_FILE)
    with tempfile.TemporaryDirectory(prefix="klr_genai_quantize_") as scratch:
        folded = _fold_constants(path, os.path.join(scratch, MODEL_FILE))
        model = onnx.load(folded)  # the weights, external or not, in memory
    _gemms_as_matmuls(model, onnx)
    quantizer = _quantizer_class()(
        model, bits=BITS[quantize], block_size=BLOCK_SIZE, is_symmetric=False,
        nodes_to_exclude=list(_products_with_graph_inputs(model)))
    quantizer.process()
    model = quantizer.model.model
    count = sum(n.op_type == "MatMulNBits" for n in model.graph.node)
    if not count:
        raise RuntimeError(
            f"quantize={quantize!r}: onnxruntime's quantizer found no MatMul "
            "on a constant weight in model.onnx.")
    data = os.path.join(folder, WEIGHTS_FILE)
    if os.path.exists(data):
        os.remove(data)  # onnx.save appends to an existing data file
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    if weights <= _INLINE_WEIGHT_BYTES:
        onnx.save(model, path)
        return (MODEL_FILE,), count
    onnx.save(model, path, save_as_external_data=True,
              all_tensors_to_one_file=True, location=WEIGHTS_FILE)
    return (MODEL_FILE, WEIGHTS_FILE), count


def _quantizer_class():
    """onnxruntime's `MatMulNBitsQuantizer`, imported without the INFO
    logging its module sets up for the whole process (a line per node)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as error:
        raise MissingDependencyError(
            "onnxruntime's weight-only quantizer (MatMulNBitsQuantizer) needs "
            f"onnx-ir, which is missing ({error}): pip install 'onnx-ir==1.1.0'"
        ) from error
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    return MatMulNBitsQuantizer


def _fold_constants(path, target):
    """`path` after onnxruntime's basic optimizations (constant folding,
    redundant nodes removed), saved at `target`; returns `target`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = target
    if os.path.exists(os.path.join(os.path.dirname(path), WEIGHTS_FILE)):
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", WEIGHTS_FILE)
    onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return target


def _products_with_graph_inputs(model):
    """The names of the MatMuls that read a graph input: runtime adapters'
    LoRA factors are inputs with zero defaults (initializers of the same
    name), which the quantizer would otherwise take for weights."""
    inputs = {i.name for i in model.graph.input}
    return (n.name for n in model.graph.node
            if n.op_type == "MatMul" and inputs & set(n.input))


def _gemms_as_matmuls(model, onnx):
    """Every `Gemm(A, B)` with no bias, alpha 1, no `transA` and a constant
    `B` (an initializer that is no graph input) becomes `MatMul(A, B)` (`B`
    transposed where `transB`)."""
    from onnx import numpy_helper

    inputs = {i.name for i in model.graph.input}
    initializers = {t.name: t for t in model.graph.initializer
                    if t.name not in inputs}
    for index, node in enumerate(model.graph.node):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or len(node.input) != 2
                or node.input[1] not in initializers
                or attributes.get("alpha", 1.0) != 1.0
                or attributes.get("transA", 0)):
            continue
        weight = node.input[1]
        if attributes.get("transB", 0):
            value = numpy_helper.to_array(initializers[weight]).T
            weight = f"{weight}_transposed"
            model.graph.initializer.append(
                numpy_helper.from_array(np.ascontiguousarray(value), weight))
        model.graph.node[index].CopyFrom(onnx.helper.make_node(
            "MatMul", [node.input[0], weight], list(node.output), name=node.name))


class GenAITeacherForcing:
    """A `GenAIGenerator` with the teacher-forced steps of
    `generation_verification` (`prefill`, `decode`): the "cache" is GenAI's
    own generator, fed one given token at a time.

    Args:
        generator: a `GenAIGenerator`.
        context_length: int. GenAI's `max_length` for a forced run.
    """

    def __init__(self, generator, context_length):
        self.generator = generator
        self.context_length = context_length
        self.runtime = generator.runtime

    def greedy(self, prompt_ids, max_new_tokens):
        return self.generator.greedy(prompt_ids, max_new_tokens)

    def prefill(self, prompt_ids):
        """`(logits, state)`: the next-token logits after `prompt_ids` (with
        the generator's active adapter)."""
        state = self.generator.new_generator(self.context_length)
        return self._feed(state, prompt_ids), state

    def decode(self, token, index, state):
        """`(logits, state)` after `token` (at `index`, which GenAI counts
        itself)."""
        del index
        return self._feed(state, [token]), state

    @staticmethod
    def _feed(state, tokens):
        state.append_tokens(np.asarray(tokens, np.int32))
        logits = np.asarray(state.get_logits())
        return logits.reshape(-1, logits.shape[-1])[-1]
