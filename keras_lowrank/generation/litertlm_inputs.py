"""What a `.litertlm` bundle is built and checked from, resolved and checked.

The start and stop tokens and the chat template come from the arguments
of `export_litertlm`, else from the model's preprocessor, else from
`tokenizer_config.json` beside `tokenizer.json` (as Hugging Face keeps
them). The check's prompts are tokenized here as Keras gets them: the
start token, then the tokenizer's ids of the raw text (the runtime
prepends the start token itself, so the engine gets the raw text).
"""

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.export_arguments import is_token_id
from keras_lowrank.generation.generator_loop import PromptTooLongError
from keras_lowrank.generation.litertlm_template import config_token
from keras_lowrank.generation.litertlm_template import read_tokenizer_config
from keras_lowrank.generation.litertlm_template import render_chat

DEFAULT_PROMPTS = ("The capital of France is", "Once upon a time,")


def chat_template_of(chat_template, tokenizer_path):
    """The model's jinja chat template: `chat_template`, else the
    `chat_template` of `tokenizer_config.json` beside `tokenizer_path`.

    Raises:
        ValueError: neither gives one (the bundle's Conversation API and
            `litert-lm run` need it).
    """
    if chat_template is None:
        chat_template = read_tokenizer_config(tokenizer_path).get("chat_template")
    if isinstance(chat_template, str) and chat_template.strip():
        return chat_template
    raise ValueError(
        "export_litertlm needs the model's chat template: LiteRT-LM's "
        "Conversation API and `litert-lm run` format every prompt with it. "
        f"Received: chat_template={chat_template!r} and no `chat_template` in "
        f"tokenizer_config.json beside {tokenizer_path!r}. Pass "
        "chat_template='{% for message in messages %}...' (the jinja string "
        "of the model's tokenizer_config.json).")


def _token_id(tokenizer, token):
    return None if token is None else tokenizer.token_to_id(token)


def start_token_of(start_token_id, model, tokenizer, tokenizer_path, vocabulary):
    """The start token: the argument, the preprocessor's, or the
    `bos_token` of `tokenizer_config.json`.

    Raises:
        ValueError: none is found, or it is not an id of the vocabulary.
    """
    if start_token_id is None:
        start_token_id = cached_causal_lm.preprocessor_token(model, "start_token_id")
    if start_token_id is None:
        config = read_tokenizer_config(tokenizer_path)
        start_token_id = _token_id(tokenizer, config_token(config, "bos_token"))
    if not is_token_id(start_token_id, vocabulary):
        raise ValueError(
            "export_litertlm needs the start token that LiteRT-LM prepends to "
            f"every prompt, an id in [0, {vocabulary}). Received: "
            f"start_token_id={start_token_id!r} (none given, none in the "
            "model's preprocessor or in tokenizer_config.json's bos_token). "
            "Pass start_token_id=.")
    return int(start_token_id)


def stop_tokens_of(stop_token_ids, model, tokenizer, tokenizer_path, vocabulary):
    """The stop tokens: the argument, or the preprocessor's end token and
    the `eos_token` of `tokenizer_config.json`.

    Raises:
        ValueError: none is found, or one is not an id of the vocabulary.
    """
    if stop_token_ids is None:
        config = read_tokenizer_config(tokenizer_path)
        found = (cached_causal_lm.preprocessor_token(model, "end_token_id"),
                 _token_id(tokenizer, config_token(config, "eos_token")))
        stop_token_ids = tuple(dict.fromkeys(t for t in found if t is not None))
    stop = tuple(stop_token_ids) if isinstance(stop_token_ids, (list, tuple)) else ()
    if not stop or not all(is_token_id(t, vocabulary) for t in stop):
        raise ValueError(
            f"`stop_token_ids` must be a non-empty list of ids in [0, "
            f"{vocabulary}), where generation stops. Received: "
            f"stop_token_ids={stop_token_ids!r} (when None: none in the "
            "model's preprocessor or in tokenizer_config.json's eos_token). "
            "Pass stop_token_ids=[...].")
    return tuple(int(t) for t in stop)


def prompt_ids(text, tokenizer, start_token_id, max_length, max_new_tokens,
               what="prompt"):
    """Keras' input for raw `text`: the start token, then its token ids.

    Raises:
        PromptTooLongError: the prompt and `max_new_tokens` do not fit the
            context of `max_length` tokens.
    """
    ids = [start_token_id] + tokenizer.encode(text, add_special_tokens=False).ids
    if len(ids) + max_new_tokens > max_length:
        raise PromptTooLongError(
            f"The {what} {text[:60]!r} is {len(ids)} tokens with the start "
            f"token; with max_new_tokens={max_new_tokens} it needs "
            f"{len(ids) + max_new_tokens} positions, more than the context "
            f"(max_length={max_length}). Shorten it, lower max_new_tokens or "
            "raise max_length.")
    return ids


def chat_ids(template, text, tokenizer, start_token_id, max_length,
             max_new_tokens):
    """Keras' input for `text` sent through the Conversation API (the
    template rendered as `transformers` renders it, tokenized) and the new
    tokens to compare: `max_new_tokens`, fewer where the context is full.

    Raises:
        PromptTooLongError: the rendering leaves no room for a new token.
    """
    rendered = render_chat(template, text, tokenizer.id_to_token(start_token_id))
    ids = prompt_ids(rendered, tokenizer, start_token_id, max_length, 1,
                     what="chat rendering of the first prompt")
    return ids, min(max_new_tokens, max_length - len(ids))
