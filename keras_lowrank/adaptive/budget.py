"""AdaLoRA's cubic budget schedule (PEFT's `RankAllocator.budget_schedule`)."""


def budget_at(step, options, initial, target):
    """The total rank allowed after optimizer step `step`, and whether to mask.

    Steps `1..warmup_steps` keep the initial budget; the steps after
    `total_steps - final_steps` the target one (masking every step); in
    between the budget falls as a cubic,

        budget = int((initial - target) · (1 - (t - warmup) / span)³ + target),
        span = total_steps - final_steps - warmup_steps,

    and the triplets are masked every `interval` steps.

    Args:
        step: int. Optimizer steps done, from 1.
        options: `klr.AdaLoRA`.
        initial: int. The sum of the adapters' initial ranks.
        target: int. `target_rank` times the number of adapters.

    Returns:
        `(budget, mask_now)`.
    """
    warmup, final, total = options.warmup_steps, options.final_steps, options.total_steps
    if step <= warmup:
        return initial, False
    if step > total - final:
        return target, True
    remaining = 1 - (step - warmup) / (total - final - warmup)
    budget = int((initial - target) * remaining**3 + target)
    return budget, step % options.interval == 0
