"""`StartupWatchdog`: a multi-worker run that cannot start ends in one line.

Before the first training step TensorFlow waits, with no time limit, for
every worker `TF_CONFIG` names, at two points: when the strategy is made
(each task registers with the coordination service; `klr.distribution.
tf_strategy(register_timeout_seconds=...)` gives that wait a limit) and when
the model's variables are created (the chief broadcasts their initial
values; no limit can be set). A worker that hangs after registering and
before it builds its model (measured: a worker stuck in `add_adapters`
held the chief in the model stage for as long as it was left, with no
output) leaves the others blocked inside TensorFlow, where no Python
exception reaches them. From the first step on, each collective step has
`COLLECTIVE_TIMEOUT_S` and the coordination service watches heartbeats
(`distributed.worker_loss_reported`).

So a multi-worker run is watched from the strategy to the end of its first
training step. If that takes longer than the timeout, a thread of this
process removes the run's build folder, writes one line to stderr and ends
the process with `os._exit(EXIT_STATUS)`: the blocked call cannot be
interrupted, and nothing after it must run. `--out` is untouched (the
chief builds its run folder aside and moves it in only at the end). The
thread needs the GIL, which TensorFlow's broadcast releases while it
waits; registration does not, hence its own limit.

The watchdog runs on the standard library alone; Keras is imported only
for its training callback (`disarm_after_first_step`), so this module
loads without starting TensorFlow.
"""

import os
import shutil
import sys
import threading

# The CLI's status for a lost worker (`finetune_command.WORKER_LOST`).
EXIT_STATUS = 3


class StartupWatchdog:
    """Ends this process unless `disarm` is called within `timeout_s`.

    Args:
        timeout_s: positive number. Seconds from `start` to `disarm`.
        message: str. The line written to stderr, after `prefix`.
        prefix: str. Starts the line (the CLI's `keras-lowrank finetune:
            error: `).

    Example:
    ```python
    watchdog = StartupWatchdog(600, "the workers did not start").start()
    strategy = make_strategy(options)
    model.fit(data, callbacks=[watchdog.disarm_after_first_step()])
    ```
    """

    def __init__(self, timeout_s, message, prefix="keras-lowrank finetune: error: "):
        self.timeout_s = float(timeout_s)
        self.line = f"{prefix}{message}"
        self._folders = []
        self._lock = threading.Lock()
        self._disarmed = False
        self._timer = threading.Timer(self.timeout_s, self._expire)
        self._timer.daemon = True

    def start(self):
        """Starts the clock; returns the watchdog."""
        self._timer.start()
        return self

    def remove_on_expiry(self, folder):
        """Has `folder` (a build or scratch folder) removed if time runs out."""
        with self._lock:
            self._folders.append(os.fspath(folder))

    def disarm(self):
        """Stops the clock; idempotent."""
        with self._lock:
            self._disarmed = True
        self._timer.cancel()

    @property
    def disarmed(self):
        return self._disarmed

    def disarm_after_first_step(self):
        """A Keras callback that calls `disarm` when a training step ends."""
        import keras

        watchdog = self

        class DisarmAfterFirstStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if not watchdog.disarmed:
                    watchdog.disarm()

        return DisarmAfterFirstStep()

    def _expire(self):
        with self._lock:
            if self._disarmed:
                return
            for folder in self._folders:
                shutil.rmtree(folder, ignore_errors=True)
            sys.stderr.write(self.line + "\n")
            sys.stderr.flush()
            os._exit(EXIT_STATUS)

