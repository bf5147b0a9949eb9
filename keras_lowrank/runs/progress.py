"""`Progress`: the stage lines, wall time and CPU time of a fine-tuning run.

Every run task (the classifier's `finetune`, the causal LM's `finetune_lm`)
runs these six stages.
"""

import contextlib
import os
import time

STAGES = ("data", "model", "train", "evaluate", "export", "report")


class Progress:
    """Announces each stage as `[k/n] name ...`, times it, counts its CPU.

    `cpu_seconds[name]` is the process's user and system CPU time (all
    threads, `os.times`) spent in the stage.
    """

    def __init__(self, log):
        self._log = log
        self.seconds = {}
        self.cpu_seconds = {}

    @contextlib.contextmanager
    def stage(self, name):
        index = STAGES.index(name) + 1
        self._log(f"[{index}/{len(STAGES)}] {name} ...")
        start = time.perf_counter()
        cpu_start = os.times()
        notes = []
        yield notes.append
        self.seconds[name] = time.perf_counter() - start
        cpu_end = os.times()
        self.cpu_seconds[name] = {"user": cpu_end.user - cpu_start.user,
                                  "system": cpu_end.system - cpu_start.system}
        for line in notes:
            self._log(f"      {line}")
        self._log(f"      {name} done in {self.seconds[name]:.1f} s")
