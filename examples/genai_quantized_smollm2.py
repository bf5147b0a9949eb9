"""SmolLM2-135M-Instruct as ONNX Runtime GenAI folders in float32, int8 and
int4, each checked against one Keras greedy reference (docs/export.md).

    .venv/bin/python examples/genai_quantized_smollm2.py --out runs/genai

Prints one line per folder: size, tokens compared, free-running and
teacher-forced matches, prompts equal, time to first token, decode speed.
`min_agreement=0` so that every mode is measured, not refused.
"""

import argparse
import os

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.keras_reference import GreedyReference
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from keras_lowrank.models import presets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/genai_quantized")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    lm = presets.smollm2_causal_lm()
    tokenizer = os.path.join(presets.smollm2_path(), "tokenizer.json")
    reference = GreedyReference(lm, cached_causal_lm.cache_shape(lm, args.max_length))
    for quantize in (None, "int8", "int4"):
        report = export_onnx_genai(
            lm, os.path.join(args.out, f"smollm2_{quantize or 'float32'}"),
            max_length=args.max_length, tokenizer=tokenizer, quantize=quantize,
            reference=reference, min_agreement=0.0)
        print(f"{quantize or 'float32'}: {report.size_bytes:,} bytes, "
              f"{report.tokens_matching}/{report.tokens_compared} free running, "
              f"{report.next_tokens_matching} teacher forced, "
              f"{report.prompts_matching} prompts equal, "
              f"first token {report.time_to_first_token_ms:.0f} ms, "
              f"{report.decode_tokens_per_s:.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main()
