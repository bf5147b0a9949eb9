"""`export_and_measure`: a causal-LM run's generator exported, then its test
answers generated in its runtime."""

import json
import os
import time

from keras_lowrank.generation import GenerationVerificationError
from keras_lowrank.generation import export_generator
from keras_lowrank.lm_finetune import lm_evaluation
from keras_lowrank.lm_finetune.chat_format import TOKENIZER_FILE
from keras_lowrank.lm_finetune.lm_evaluation import answer_tokens
from keras_lowrank.runs.export_record import EXPORT_ERRORS
from keras_lowrank.runs.export_record import record_export
from keras_lowrank.runs.run_folder import artifact_file

# Test prompts the export check generates from, and how many tokens each.
VERIFY_PROMPTS = 4
VERIFY_NEW_TOKENS = 8


def export_and_measure(model, format, folder, chat, test, scored, examples,
                       options, build):
    """Exports a generator to `build`, then answers the test prompts with it
    in its runtime. Paths in the result name the artifact in `options.out`."""
    path = os.path.join(build, artifact_file(format))
    prompts = [test.prompts[i] for i in scored]
    longest = max((len(p) for p in prompts), default=0)
    new_tokens = answer_tokens(test, scored)
    if longest + new_tokens > options.export_max_length:
        raise ValueError(
            f"export_max_length must hold the longest test prompt and its "
            f"answer: {longest} + {new_tokens} tokens. Received: "
            f"export_max_length={options.export_max_length}")
    verify = prompts[:VERIFY_PROMPTS] or None
    tokenizer = options.tokenizer_file or os.path.join(folder, TOKENIZER_FILE)
    kwargs = {}
    if format == "tflite":
        kwargs["prefill_lengths"] = prefill_lengths(options.export_max_length)
        kwargs["quantize"] = options.tflite_quantize
        if options.tflite_quantize:
            kwargs["keep_float"] = options.tflite_keep_float
    final = os.path.join(options.out, artifact_file(format))

    def write():
        exported = export_generator(
            model, path, format, max_length=options.export_max_length,
            tokenizer=tokenizer, stop_token_ids=chat.stop_token_ids or None,
            prompts=verify, max_new_tokens=min(
                VERIFY_NEW_TOKENS, options.export_max_length - longest),
            **kwargs)
        start = time.perf_counter()
        generated = lm_evaluation.runtime_greedy(path, prompts, new_tokens,
                                                 chat.stop_token_ids)
        texts = [chat.decode(tokens) for tokens in generated]
        references = [chat.decode(test.completions[i]) for i in scored]
        # As report.json will hold it (tuples as lists).
        result = json.loads(json.dumps(exported.to_dict()))
        result.update({
            "size_bytes": os.path.getsize(path),
            "test_accuracy": lm_evaluation.answer_accuracy(texts, references),
            "runtime_seconds": time.perf_counter() - start,
            "export_max_length": options.export_max_length,
            "keep_float": list(kwargs.get("keep_float", ())),
        })
        return result

    # A failed export is recorded, as the classifier's runs do: the rest of
    # the report still stands.
    return record_export(
        write, path, final, errors=(*EXPORT_ERRORS, GenerationVerificationError),
        failed=lambda error: {"test_accuracy": None, "size_bytes": None,
                              "path": None})


def prefill_lengths(max_length):
    """Prompt chunks of 16, 32, 64, ... up to half the cache: a prompt is
    written in chunks that pad it little (75 tokens: 64 + 16, not 128),
    and each chunk length is one LiteRT signature more to convert."""
    lengths, n = [], 16
    while n <= max_length // 2:
        lengths.append(n)
        n *= 2
    return tuple(lengths) or (max_length,)
