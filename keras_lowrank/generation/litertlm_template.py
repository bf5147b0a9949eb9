"""The chat template of a `.litertlm` bundle: a Hugging Face jinja template,
made to render in LiteRT-LM as it does in `transformers`.

Two differences of the runtime are undone by `runtime_template`, which
wraps the model's template unchanged:
- LiteRT-LM's Conversation API hands the template every message's content
  as a list of parts (`[{"type": "text", "text": ...}]`), even for a plain
  string, where Hugging Face templates expect a string: SmolLM2's
  `'<|im_start|>' + message['content']` fails there ("tried to use +
  operator on unsupported types string and sequence"). A preamble joins
  each message's text parts back into a string.
- The runtime prepends the start token to whatever the template renders.
  Where the rendering itself begins with the start token's text (Gemma's
  `{{ bos_token }}`, SmolLM2's `<|im_start|>`, which is its start token),
  that text is dropped, so the model sees the start token once, as it
  does after `transformers.apply_chat_template`.
`render_chat` is the reference: the model's template rendered by jinja2 as
`transformers` sets it up, the leading start token dropped the same way.
"""

import json
import os

# Rebinds `messages` to `{role, content: str}` dicts before the model's own
# template runs; other message keys (tool calls) are not kept.
_PREAMBLE = (
    "{%- set klr_ns = namespace(messages=[]) -%}\n"
    "{%- for message in messages -%}\n"
    "{%- if message['content'] is string -%}\n"
    "{%- set klr_ns.messages = klr_ns.messages + [{'role': message['role'], "
    "'content': message['content']}] -%}\n"
    "{%- else -%}\n"
    "{%- set klr_text = namespace(value='') -%}\n"
    "{%- for part in message['content'] -%}\n"
    "{%- if part['type'] == 'text' -%}"
    "{%- set klr_text.value = klr_text.value + part['text'] -%}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- set klr_ns.messages = klr_ns.messages + [{'role': message['role'], "
    "'content': klr_text.value}] -%}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- set messages = klr_ns.messages -%}\n"
    "{%- set bos_token = {start} -%}\n"
    "{%- set klr_rendered %}"
)
# Closes the block that captured the model's rendering; drops the leading
# start token's text, which the runtime adds as a token itself.
_POSTAMBLE = (
    "{% endset -%}\n"
    "{%- if klr_rendered.startswith(bos_token) -%}"
    "{{ klr_rendered[bos_token | length:] }}"
    "{%- else -%}{{ klr_rendered }}{%- endif -%}"
)
TOKENIZER_CONFIG = "tokenizer_config.json"


def runtime_template(template, start_text):
    """`template` (a Hugging Face chat template) as LiteRT-LM renders it
    right (see the module docstring); `start_text` is the start token's
    text (e.g. `"<|im_start|>"`)."""
    start = json.dumps(start_text)  # a jinja string literal
    return _PREAMBLE.replace("{start}", start) + template + _POSTAMBLE


def model_template(runtime):
    """The model's own template inside a `runtime_template`, or None when
    `runtime` was not made by it."""
    head, _, rest = _PREAMBLE.partition("{start}")
    if runtime is None or not runtime.startswith(head):
        return None
    _, found, inner = runtime[len(head):].partition(rest)
    if not found or not inner.endswith(_POSTAMBLE):
        return None
    return inner[:-len(_POSTAMBLE)]


def read_tokenizer_config(tokenizer_path):
    """`tokenizer_config.json` beside `tokenizer_path` as a dict ({} when
    there is none)."""
    path = os.path.join(os.path.dirname(os.path.abspath(tokenizer_path)),
                        TOKENIZER_CONFIG)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as file:
        config = json.load(file)
    return config if isinstance(config, dict) else {}


def config_token(config, key):
    """A special token of `tokenizer_config.json` (`"bos_token"`,
    `"eos_token"`) as a string, or None."""
    value = config.get(key)
    if isinstance(value, dict):  # an AddedToken: {"content": ..., ...}
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def render_chat(template, user_text, start_text, eos_token=None):
    """The text `transformers.apply_chat_template` makes of one user message
    with the generation prompt, less a leading `start_text` (the runtime
    adds the start token itself)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise ValueError(message)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    rendered = environment.from_string(template).render(
        messages=[{"role": "user", "content": user_text}],
        add_generation_prompt=True, bos_token=start_text,
        eos_token=eos_token or "")
    return rendered[len(start_text):] if rendered.startswith(start_text) else rendered
