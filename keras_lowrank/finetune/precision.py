"""The compute precision of a run's training: what was asked, what runs, why.

Training may compute in bfloat16 or float16 under a Keras mixed policy
(`keras.mixed_precision`): every variable — frozen kernels, LoRA factors,
the head — and the optimizer state stay float32, only the products run in
the lower precision (`LoRAAdapter` takes its wrapped layer's policy, so its
factors are created float32 as well). Evaluation and export always run in
float32, on the trained adapters loaded into a float32 model.

- `float32`: everywhere.
- `bfloat16`: a CPU with AVX512_BF16 or AMX (native bfloat16 dot products;
  elsewhere TensorFlow emulates them, slower than float32), or a GPU of
  compute capability 8.0 or newer.
- `float16`: a GPU (with loss scaling, which Keras adds itself).
- `auto`: float16 on a GPU, bfloat16 on a CPU that has AVX512_BF16 or AMX,
  float32 elsewhere. CPU flags are read from /proc/cpuinfo, so on other
  operating systems `auto` means float32 on the CPU.
"""

import contextlib
import dataclasses
import sys

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Mixed policies: variables float32, compute in the named type.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
            "float16": "mixed_float16"}
# /proc/cpuinfo flags of native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The first GPU generation (Ampere) with bfloat16 tensor cores.
BF16_GPU_CAPABILITY = (8, 0)
CPUINFO = "/proc/cpuinfo"


@dataclasses.dataclass(frozen=True)
class Precision:
    """What a run computes in, and why.

    Args:
        requested: str. The option as given, one of `PRECISIONS`.
        name: str. What training computes in: "float32", "bfloat16" or
            "float16".
        reason: str. Why, in words (the device and its capability).
    """

    requested: str
    name: str
    reason: str

    @property
    def policy(self) -> str:
        """The Keras dtype policy training runs under."""
        return POLICIES[self.name]

    def to_dict(self):
        return {"requested": self.requested, "train": self.name,
                "reason": self.reason, "evaluate_and_export": "float32"}


def resolve_precision(requested, *, cpu_flags=None, gpus=None) -> Precision:
    """The precision `requested` means on this machine.

    Args:
        requested: str. One of `PRECISIONS`.
        cpu_flags: set of str, or None to read this CPU's (empty where they
            cannot be read).
        gpus: list of `(name, (major, minor))` compute capabilities, or None
            to ask TensorFlow.

    Returns:
        A `Precision`.

    Raises:
        ValueError: `requested` is not one of `PRECISIONS`, or this machine
            cannot compute in it (one line saying why and what can).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"Unrecognized precision={requested!r}. Supported "
                         f"values are: {list(PRECISIONS)}")
    cpu_flags = read_cpu_flags() if cpu_flags is None else set(cpu_flags)
    gpus = gpu_capabilities() if gpus is None else list(gpus)
    cpu_bf16 = sorted(flag for flag in BF16_CPU_FLAGS if flag in cpu_flags)
    if gpus:
        name, capability = gpus[0]
        device = f"GPU {name} (compute capability {capability[0]}.{capability[1]})"
        bf16_ok = tuple(capability) >= BF16_GPU_CAPABILITY
        bf16_why = ("it computes bfloat16 natively" if bf16_ok else
                    "bfloat16 needs compute capability 8.0 or newer")
    else:
        device = "CPU" + (f" with {', '.join(f.upper() for f in cpu_bf16)}"
                          if cpu_bf16 else "")
        bf16_ok = bool(cpu_bf16)
        bf16_why = ("it computes bfloat16 natively" if bf16_ok else
                    _no_cpu_bf16())
    able = ["float32", *(["bfloat16"] if bf16_ok else []),
            *(["float16"] if gpus else [])]
    if requested == "auto":
        chosen = "float16" if gpus else ("bfloat16" if bf16_ok else "float32")
        why = {"float16": f"auto: float16 on the {device}",
               "bfloat16": f"auto: bfloat16 on the {device}",
               "float32": f"auto: float32, the {device} has no native "
                          f"bfloat16 ({bf16_why})"}[chosen]
        return Precision(requested, chosen, why)
    if requested not in able:
        need = (bf16_why if requested == "bfloat16" else
                "float16 training needs a GPU")
        raise ValueError(
            f"precision={requested!r} cannot run on this machine's {device}: "
            f"{need}. Supported here: {['auto', *able]}"
        )
    return Precision(requested, requested, f"requested; runs on the {device}")


def read_cpu_flags(path=CPUINFO) -> set:
    """The `flags` of the first CPU in /proc/cpuinfo; empty elsewhere."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_capabilities() -> list:
    """`[(name, (major, minor))]` of the GPUs TensorFlow sees."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        found.append((details.get("device_name", device.name),
                      tuple(details.get("compute_capability") or (0, 0))))
    return found


@contextlib.contextmanager
def dtype_policy(precision: Precision):
    """Layers built inside compute in `precision` (Keras' global policy).

    The global policy is restored on exit: layers keep the policy they were
    built with, nothing built later is affected.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision.policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _no_cpu_bf16():
    if not sys.platform.startswith("linux"):
        return f"CPU flags are only read on Linux, not on {sys.platform}"
    return "the CPU has neither AVX512_BF16 nor AMX"
