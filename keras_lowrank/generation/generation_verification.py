"""Greedy generation from the artifact against Keras', token for token.

A float artifact must give Keras' tokens exactly. A quantized one gives
two agreements: free-running (its own greedy tokens equal to Keras' at the
same place; once the paths part at a near tie they rarely meet again) and
next-token (fed Keras' own continuation, teacher forced, its argmax equal
to Keras' next token at each step); the next-token agreement must reach a
stated minimum.
"""

import statistics

import numpy as np

from keras_lowrank.exporters.verification import ExportVerificationError


class GenerationVerificationError(ExportVerificationError):
    """The artifact's greedy tokens differ from Keras' on some prompt, or
    (quantized) agree with Keras' on too small a share of tokens."""


def verify_generation(generator, prompts, max_new_tokens, expected,
                      min_agreement=None):
    """Runs every prompt in `generator` and compares with `expected`.

    Args:
        generator: a `runtime.Generator` on the written artifact.
        prompts: list of lists of token ids.
        max_new_tokens: int.
        expected: list of `ReferenceGeneration`, Keras' tokens per prompt.
        min_agreement: None: every token must equal Keras'. A float in
            [0, 1]: the next-token agreement must reach it (quantized
            artifacts, whose greedy path may leave Keras' at a near tie).

    Returns:
        dict with `tokens_compared`, `tokens_matching`, `prompts_matching`,
        `time_to_first_token_ms` (median), `decode_tokens_per_s`; with
        `min_agreement`, `next_tokens_matching` too.

    Raises:
        GenerationVerificationError: at the first prompt that differs,
            naming the prompt, the position, both tokens and Keras' top-2
            logit gap there; with `min_agreement`, after all prompts, when
            the share of equal tokens is below it.
    """
    # One untimed run first: buffers are allocated on the first call.
    generator.greedy(prompts[0], min(2, max_new_tokens))
    compared = matching = whole = forced = 0
    first_token_s, decode_s, decode_steps = [], 0.0, 0
    for number, (prompt, keras_run) in enumerate(zip(prompts, expected)):
        result = generator.greedy(prompt, max_new_tokens)
        ours, theirs = result.tokens, keras_run.tokens
        compared += len(theirs)
        matching += sum(a == b for a, b in zip(ours, theirs))
        if ours != theirs and min_agreement is None:
            at = next(
                (i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                min(len(ours), len(theirs)),
            )
            mine = ours[at] if at < len(ours) else "nothing"
            keras = theirs[at] if at < len(theirs) else "nothing"
            gap = keras_run.margins[at] if at < len(keras_run.margins) else None
            raise GenerationVerificationError(
                f"Greedy generation from the artifact differs from Keras on "
                f"prompt {number} ({len(prompt)} tokens) at new token {at}: "
                f"artifact {mine}, Keras {keras}"
                + (f" (Keras' top-2 logit gap there: {gap:.3g})."
                   if gap is not None else ".")
            )
        whole += ours == theirs
        if min_agreement is not None:
            forced += _next_token_matches(generator, prompt, theirs)
        first_token_s.append(result.time_to_first_token_s)
        decode_s += result.decode_seconds
        decode_steps += len(result.tokens) - 1
    if min_agreement is not None and forced < min_agreement * compared:
        raise GenerationVerificationError(
            f"The quantized artifact's next token agrees with Keras' on "
            f"{forced}/{compared} steps of Keras' own continuations "
            f"({forced / compared:.3f}), below min_agreement={min_agreement} "
            f"(free-running greedy: {matching}/{compared} tokens, "
            f"{whole}/{len(prompts)} prompts equal)."
        )
    measured = {} if min_agreement is None else {"next_tokens_matching": forced}
    return {**measured,
        "tokens_compared": compared,
        "tokens_matching": matching,
        "prompts_matching": whole,
        "time_to_first_token_ms": 1000 * statistics.median(first_token_s),
        "decode_tokens_per_s": decode_steps / decode_s if decode_s else None,
    }


def _next_token_matches(generator, prompt, tokens):
    """Steps where the artifact, fed `prompt` and Keras' `tokens` so far,
    picks Keras' next token (teacher forced)."""
    logits, cache = generator.prefill(prompt)
    matches = int(np.argmax(logits)) == tokens[0]
    index = len(prompt)
    for previous, expected in zip(tokens[:-1], tokens[1:]):
        logits, cache = generator.decode(previous, index, cache)
        matches += int(np.argmax(logits)) == expected
        index += 1
    return matches
