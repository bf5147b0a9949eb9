"""Parameter counts of a model, as PEFT's `print_trainable_parameters` has them."""

import math


def parameter_counts(model):
    """`(trainable, total)` parameter counts of `model`, each weight once."""
    seen, trainable, total = set(), 0, 0
    trainable_ids = {id(w) for w in model.trainable_weights}
    for weight in model.weights:
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        size = math.prod(weight.shape)
        total += size
        if id(weight) in trainable_ids:
            trainable += size
    return trainable, total


def trainable_summary(model) -> str:
    """One line: trainable and total parameters, and the trainable share.

    Example:
    ```python
    klr.trainable_summary(model)
    # 'trainable params: 74,498 || all params: 22,788,484 || trainable%: 0.3269'
    ```
    """
    trainable, total = parameter_counts(model)
    share = 100.0 * trainable / total if total else 0.0
    return (
        f"trainable params: {trainable:,} || all params: {total:,} "
        f"|| trainable%: {share:.4f}"
    )
