"""PEFT's ADALORA `adapter_config.json`: its own fields, read and written.

An ADALORA config is a LORA config plus AdaLoRA's schedule (`init_r`,
`target_r`, `tinit`, `tfinal`, `deltaT`, ...) and, in `rank_pattern`, the
masks of the triplets that survived (`{"<module>.lora_E": [true, ...]}`);
`peft_config.PeftAdapterConfig` keeps them in its `adalora` dict.
"""

ADALORA = "ADALORA"
# AdaLoraConfig's own fields: its schedule, `init_r` (every module's initial
# rank, and so its scale `lora_alpha / init_r`) and `rank_pattern`, which
# there holds `{"<module>.lora_E": [kept, ...]}`, the surviving triplets.
ADALORA_FIELDS = (
    "target_r", "init_r", "tinit", "tfinal", "deltaT", "beta1", "beta2",
    "orth_reg_weight", "total_step",
)


def adalora_fields(data, source):
    """An ADALORA config's fields, its own ones moved into `adalora`."""
    data = dict(data)
    adalora = {k: data.pop(k) for k in ADALORA_FIELDS if k in data}
    masks = data.pop("rank_pattern", None) or {}
    if not isinstance(masks, dict) or not all(isinstance(m, list) for m in masks.values()):
        raise ValueError(
            f"{source}: an ADALORA config's rank_pattern is "
            "{'<module>.lora_E': [true, false, ...]}. Received: "
            f"rank_pattern={masks!r:.120}"
        )
    if data.get("use_dora"):
        raise ValueError(f"{source}: ADALORA with use_dora=true does not exist in PEFT.")
    if not isinstance(adalora.get("init_r"), int) or adalora["init_r"] < 1:
        raise ValueError(
            f"{source}: an ADALORA config needs a positive integer `init_r`. "
            f"Received: init_r={adalora.get('init_r')!r}"
        )
    adalora["rank_masks"] = masks
    data.pop("r", None)  # AdaLoRA ignores `r`: every module starts at init_r
    return {**data, "r": adalora["init_r"]}, adalora


def adalora_json(config):
    if config.peft_type != ADALORA:
        return {}
    fields = {k: v for k, v in config.adalora.items() if k != "rank_masks"}
    return {
        **fields, "peft_type": ADALORA, "r": 8,
        "rank_pattern": config.adalora.get("rank_masks") or None,
    }
