"""Runs a `.litertlm` bundle in the LiteRT-LM engine and compares with Keras.

The engine takes text and gives text (its Python API has no token-id
input or output), so the comparison is made on text, both sides decoded
by the bundle's own tokenizer in the engine: Keras' greedy tokens are
detokenized with `Engine.detokenize` and must equal the engine's greedy
text exactly; matching tokens are counted as the leading Keras tokens
whose text the engine's text begins with. With a word-level tokenizer this
is a comparison of token ids; with byte-level BPE, equal text could hide a
different split of the same characters (the engine would have picked
other tokens that spell the same), which text cannot show.

The engine prepends the start token to every prompt and stops at the
stop tokens; the Keras side is computed from `[start] + prompt ids` and
cut before its first stop token (`CheckCase`).
"""

import contextlib
import dataclasses
import statistics
import tempfile

from keras_lowrank.generation.generation_verification import (
    GenerationVerificationError,
)

_API_PIP = "pip install 'litert-lm-api==0.18.1'"


@dataclasses.dataclass(frozen=True)
class CheckCase:
    """One prompt of the check.

    Args:
        text: str. The prompt as the engine gets it (raw text).
        prompt_ids: tuple of int. The same prompt as Keras gets it, the
            start token first.
        expected: tuple of int. Keras' greedy tokens, cut before the first
            stop token.
        margins: tuple of float. Keras' top-2 logit gap per token.
    """

    text: str
    prompt_ids: tuple
    expected: tuple
    margins: tuple = ()


def _litert_lm():
    try:
        import litert_lm
    except ImportError as error:
        raise ImportError(
            f"litert-lm-api is required to run .litertlm files: {_API_PIP}"
        ) from error
    return litert_lm


@contextlib.contextmanager
def open_engine(path, max_num_tokens, num_threads=None):
    """A LiteRT-LM CPU `Engine` on `path`, its XNNPACK cache kept in a
    temporary folder (not beside `path`), closed on exit."""
    litert_lm = _litert_lm()
    backend = litert_lm.Backend.CPU(thread_count=num_threads)
    with tempfile.TemporaryDirectory(prefix="klr_litertlm_cache_") as cache:
        engine = litert_lm.Engine(
            str(path), backend=backend, max_num_tokens=max_num_tokens,
            cache_dir=cache, enable_benchmark=True)
        try:
            yield engine
        finally:
            engine.close()


def greedy_text(engine, text, max_new_tokens, lora_path=None):
    """`(text, benchmark info)` of greedy generation (top_k=1) from raw
    `text`, no prompt template, with the LoRA file `lora_path` if given."""
    litert_lm = _litert_lm()
    session = engine.create_session(
        apply_prompt_template=False, max_output_tokens=max_new_tokens,
        sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0),
        lora_config=_lora_config(litert_lm, lora_path))
    try:
        session.run_prefill([text])
        texts = session.run_decode().texts
        return (texts[0] if texts else ""), session.get_benchmark_info()
    finally:
        session.close()


def conversation_text(engine, user_text, max_new_tokens, lora_path=None):
    """The engine's greedy reply to one user message, through the bundle's
    chat template (the Conversation API)."""
    litert_lm = _litert_lm()
    conversation = engine.create_conversation(
        max_output_tokens=max_new_tokens,
        sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0),
        lora_config=_lora_config(litert_lm, lora_path))
    try:
        reply = conversation.send_message(user_text)
    finally:
        conversation.close()
    return "".join(str(part) for part in reply.contents)


def _lora_config(litert_lm, lora_path):
    return None if lora_path is None else litert_lm.LoraConfig(
        lora_path=str(lora_path))


def check_bundle(engine, cases, max_new_tokens, min_agreement=None,
                 conversation=None, lora_path=None):
    """Greedy generation in `engine` against Keras, prompt by prompt.

    Args:
        engine: from `open_engine`.
        cases: list of `CheckCase`.
        max_new_tokens: int.
        min_agreement: None: every prompt's text must equal Keras'. A float:
            the next-token agreement (teacher forced on Keras' tokens)
            must reach it.
        conversation: optional `(user_text, CheckCase, new_tokens)`: the
            Conversation API's reply must equal Keras' greedy tokens after
            the template rendered as `transformers` renders it
            (`case.prompt_ids`).
        lora_path: str. The LoRA file every session loads (a bundle with
            runtime LoRA inputs leaves them unset without one).

    Returns:
        dict of the `LitertlmReport` fields it measures.

    Raises:
        GenerationVerificationError: naming the prompt and both texts.
    """
    greedy_text(engine, cases[0].text, min(2, max_new_tokens), lora_path)  # warm-up
    compared = matching = whole = forced = forced_steps = 0
    first_token_s, decode_s, decode_steps = [], 0.0, 0
    for number, case in enumerate(cases):
        text, info = greedy_text(engine, case.text, max_new_tokens, lora_path)
        keras_text = engine.detokenize(list(case.expected))
        compared += len(case.expected)
        matching += _leading_tokens_reproduced(engine, case.expected, text)
        if text != keras_text and min_agreement is None:
            raise GenerationVerificationError(
                f"The LiteRT-LM engine's greedy text differs from Keras' on "
                f"prompt {number} ({case.text!r}, {len(case.prompt_ids)} "
                f"tokens with the start token): engine {text!r}, Keras "
                f"{keras_text!r} (tokens {list(case.expected)}).")
        whole += text == keras_text
        if min_agreement is not None:
            found, fed = _next_token_matches(engine, case, lora_path)
            forced += found
            forced_steps += fed
        first_token_s.append(info.time_to_first_token_in_second)
        if info.last_decode_token_count > 1 and info.last_decode_tokens_per_second:
            decode_s += (info.last_decode_token_count
                         / info.last_decode_tokens_per_second)
            decode_steps += info.last_decode_token_count
    if min_agreement is not None and (
            not forced_steps or forced < min_agreement * forced_steps):
        raise GenerationVerificationError(
            f"The quantized bundle's next token agrees with Keras' on "
            f"{forced}/{forced_steps} steps of Keras' own continuations "
            f"({forced / max(forced_steps, 1):.3f}), below min_agreement="
            f"{min_agreement} (free-running greedy: {matching}/{compared} "
            f"tokens, {whole}/{len(cases)} prompts equal; "
            f"{compared - forced_steps} steps left out, their text read back "
            "as other ids by the bundle's tokenizer).")
    measured = {
        "tokens_compared": compared,
        "tokens_matching": matching,
        "prompts_matching": whole,
        "next_tokens_matching": forced if min_agreement is not None else None,
        "next_tokens_compared": forced_steps if min_agreement is not None else None,
        "time_to_first_token_ms": 1000 * statistics.median(first_token_s),
        "decode_tokens_per_s": decode_steps / decode_s if decode_s else None,
    }
    if conversation is not None:
        measured["conversation_matching"] = _check_conversation(
            engine, *conversation, exact=min_agreement is None,
            lora_path=lora_path)
    return measured


def _leading_tokens_reproduced(engine, expected, text):
    """How many of Keras' tokens, from the first, the engine's text holds:
    the longest run whose detokenized text is a prefix of `text`.

    Counted on text, not on `text` tokenized again: a byte-level BPE
    tokenizer may split the engine's text into other ids than the ones
    that produced it (a space joined to the next word), which would count
    equal texts as different tokens."""
    for count in range(len(expected), 0, -1):
        if text.startswith(engine.detokenize(list(expected[:count]))):
            return count
    return 0


def _next_token_matches(engine, case, lora_path=None):
    """`(matches, steps)`: of the `steps` where the engine (with the LoRA
    file `lora_path`, if given) can be fed the prompt and Keras' tokens so
    far, those where it picks Keras' next token (its one new token's text
    equals that token's text).

    The engine takes text, not ids: a step is fed as the text of those
    tokens, and counts only when the engine's tokenizer reads that text
    back as the same ids. A byte-level BPE may split it otherwise (a
    space joined to the next word): the engine would then continue
    another sequence than Keras', and the step would judge the tokenizer,
    not the model."""
    prompt = list(case.prompt_ids[1:])  # the engine adds the start token
    matches = steps = 0
    for step, token in enumerate(case.expected):
        ids = prompt + list(case.expected[:step])
        text = engine.detokenize(ids) if step else case.text
        if list(engine.tokenize(text)) != ids:
            continue
        chosen, _ = greedy_text(engine, text, 1, lora_path)
        matches += chosen == engine.detokenize([token])
        steps += 1
    return matches, steps


def _check_conversation(engine, user_text, case, max_new_tokens, exact,
                        lora_path=None):
    reply = conversation_text(engine, user_text, max_new_tokens, lora_path)
    keras_text = engine.detokenize(list(case.expected))
    if reply != keras_text and exact:
        raise GenerationVerificationError(
            f"The Conversation API's reply to {user_text!r} differs from "
            f"Keras' greedy reply after the chat template rendered as "
            f"transformers renders it: engine {reply!r}, Keras "
            f"{keras_text!r}. The runtime renders the template differently; "
            "check the template, or pass chat_template=.")
    return reply == keras_text
