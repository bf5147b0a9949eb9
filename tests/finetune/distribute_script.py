"""`keras-lowrank finetune` in a process of its own, on N logical CPU devices.

Run by `test_distribute.py`: `python -m tests.finetune.distribute_script N
finetune ARGS...`. The CPU is split into N logical devices before
TensorFlow starts (what `--distribute mirrored` then trains on); the
command's exit code is the process's.
"""

import sys

import tensorflow as tf

devices = int(sys.argv[1])
if devices > 1:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration()] * devices,
    )

from keras_lowrank.cli.main import main  # noqa: E402

if __name__ == "__main__":
    code = main(sys.argv[2:])
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
