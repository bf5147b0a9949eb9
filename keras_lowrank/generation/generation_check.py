"""`GenerationCheck`: what a check of greedy generation against Keras measured.

Every generation exporter drives its artifact in a runtime and compares its
greedy tokens with Keras' (`verify_generation`, `litertlm_check`); its
report is a `GenerationCheck` with the exporter's own fields added, so the
measured fields, the agreement and their wording are declared once.
"""

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationCheck:
    """The measured fields every generation export report has.

    Args:
        verified: bool. Whether greedy generation was compared with Keras'.
        prompt_lengths: tuple of int. The checked prompts' lengths in tokens.
        tokens_compared: int. Keras' new tokens compared, over all prompts.
        tokens_matching: int. Of those, the artifact's at the same place.
        prompts_matching: int. Prompts whose whole generation is Keras'.
        time_to_first_token_ms: float or None. Median over the checked
            prompts, batch 1.
        decode_tokens_per_s: float or None. Decoded tokens after the first
            over the time they took, all prompts together, batch 1.
        next_tokens_matching: int or None. Quantized: of the steps of Keras'
            own continuations (teacher forced), those where the artifact
            picks Keras' next token; None for a float artifact.
        next_tokens_compared: int or None. The teacher-forced steps those
            are counted among: `tokens_compared`, or fewer where a runtime
            fed text (LiteRT-LM) cannot be fed Keras' ids at a step (its
            tokenizer reads the text back as other ids); None: all of them.
    """

    verified: bool = False
    prompt_lengths: tuple = ()
    tokens_compared: int = 0
    tokens_matching: int = 0
    prompts_matching: int = 0
    time_to_first_token_ms: float | None = None
    decode_tokens_per_s: float | None = None
    next_tokens_matching: int | None = None
    next_tokens_compared: int | None = None

    @property
    def agreement(self):
        """Free-running: the share of new greedy tokens equal to Keras' at
        the same place (1.0 for a verified float artifact), or None when
        not verified."""
        if not self.tokens_compared:
            return None
        return self.tokens_matching / self.tokens_compared

    @property
    def next_token_agreement(self):
        """Quantized: the teacher-forced share of Keras' next tokens
        (`min_agreement` applies to it); None otherwise."""
        steps = (self.tokens_compared if self.next_tokens_compared is None
                 else self.next_tokens_compared)
        if self.next_tokens_matching is None or not steps:
            return None
        return self.next_tokens_matching / steps

    def matching_text(self) -> str:
        """`"matching/compared (n/N prompts, lengths [...])"`."""
        return (f"{self.tokens_matching}/{self.tokens_compared} "
                f"({self.prompts_matching}/{len(self.prompt_lengths)} prompts, "
                f"lengths {list(self.prompt_lengths)})")

    def speed_text(self) -> str:
        """Time to first token and decode speed, as a report line."""
        speed = self.decode_tokens_per_s
        return (f"time to first token {self.time_to_first_token_ms:.1f} ms "
                "(median), decode "
                + (f"{speed:.1f} tokens/s" if speed else "n/a (one token)")
                + " (batch 1)")
