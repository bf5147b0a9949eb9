"""One test per function of `keras_lowrank._compat.tensorflow`."""

import json
import os
import subprocess
import sys
import textwrap


def test_configure_worker_registration_sets_a_barrier_and_a_limit():
    # In a child: the setting belongs to the process's TensorFlow context.
    script = textwrap.dedent("""
        import json
        import tensorflow as tf
        from tensorflow.python.eager import context
        from keras_lowrank._compat import tensorflow as tensorflow_compat
        cluster = tf.train.ClusterSpec({"chief": ["127.0.0.1:1"],
                                        "worker": ["127.0.0.1:2", "127.0.0.1:3"]})
        tensorflow_compat.configure_worker_registration(cluster, 12.5)
        config = context.context().coordination_service
        print(json.dumps({
            "type": config.service_type, "leader": config.service_leader,
            "jobs": [[job.name, job.num_tasks] for job in config.coordinated_job_list],
            "timeout_ms": config.cluster_register_timeout_in_ms,
            "barrier": config.cluster_register_with_barrier}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "type": "standalone", "leader": "/job:chief/replica:0/task:0",
        "jobs": [["chief", 1], ["worker", 2]], "timeout_ms": 12500, "barrier": True}
