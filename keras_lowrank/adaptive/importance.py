"""The importance of AdaLoRA triplets, and the masks that keep a budget.

Per weight entry, as in the paper and PEFT: the sensitivity `I = |w·∂L/∂w|`
(`w` after the optimizer step, the gradient of that step), its moving
average `Ī ← β1·Ī + (1 − β1)·I` and the uncertainty
`Ū ← β2·Ū + (1 − β2)·|I − Ī|`; the score of an entry is `Ī·Ū`. A triplet
`i` scores `S(Λ_i) + mean_j S(P_ji) + mean_j S(Q_ij)`, and an allocation
keeps the `budget` highest-scoring triplets of all adapters together.
"""

import numpy as np

FACTORS = ("lora_a", "lora_e", "lora_b")


class Importance:
    """The moving averages of one adapter's factors (numpy, float32).

    Args:
        shapes: `{"lora_a": (fan_in, r), "lora_e": (r,), "lora_b": (r, fan_out)}`.
    """

    def __init__(self, shapes):
        self.shapes = dict(shapes)
        self.reset()

    def reset(self):
        self.sensitivity = {k: np.zeros(s, np.float32) for k, s in self.shapes.items()}
        self.uncertainty = {k: np.zeros(s, np.float32) for k, s in self.shapes.items()}

    def update(self, weights, gradients, beta1, beta2):
        """One step: `weights` and `gradients` are `{factor: array}`."""
        for key in FACTORS:
            current = np.abs(weights[key] * gradients[key])
            average = beta1 * self.sensitivity[key] + (1 - beta1) * current
            self.uncertainty[key] = (
                beta2 * self.uncertainty[key] + (1 - beta2) * np.abs(current - average)
            )
            self.sensitivity[key] = average

    def triplet_scores(self):
        """`(r,)`: the score of each triplet `(P_i, Λ_i, Q_i)`."""
        score = {k: self.sensitivity[k] * self.uncertainty[k] for k in FACTORS}
        return score["lora_e"] + score["lora_a"].mean(axis=0) + score["lora_b"].mean(axis=1)


def allocate(scores, budget):
    """Masks keeping the `budget` highest scores of all adapters together.

    Ties go to the adapter listed first, then the lower triplet index, so
    the masks keep exactly `min(budget, total)` triplets.

    Args:
        scores: `{key: (r_k,) array}`.
        budget: int.

    Returns:
        `{key: (r_k,) float32 array of 0 and 1}`.
    """
    keys = list(scores)
    flat = np.concatenate([np.asarray(scores[k], np.float64) for k in keys])
    order = np.argsort(-flat, kind="stable")
    kept = np.zeros(flat.shape, np.float32)
    kept[order[: max(0, min(int(budget), flat.size))]] = 1.0
    bounds = np.cumsum([0] + [len(scores[k]) for k in keys])
    return {k: kept[bounds[i]:bounds[i + 1]] for i, k in enumerate(keys)}
