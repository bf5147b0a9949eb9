"""Every private TensorFlow API keras_lowrank relies on.

The test of each function is in `tests/compat/test_tensorflow.py`. Pinned:
tensorflow==2.21.0.
"""

# === The coordination service ===


def configure_worker_registration(cluster_spec, timeout_seconds):
    """Has a multi-worker strategy fail if a worker does not register in time.

    `tf.distribute.MultiWorkerMirroredStrategy()` starts TensorFlow's
    coordination service and waits, with no time limit and holding the
    GIL, for every task of the cluster to register. TensorFlow configures
    the service only where none is configured yet; configured here first,
    with TensorFlow's own job list and leader plus a registration barrier
    (`cluster_register_with_barrier`, `cluster_register_timeout_in_ms`),
    making the strategy raise `tf.errors.DeadlineExceededError` ("Barrier
    timed out. Id: [Init]Wait_for_all_tasks_to_register ... Some timed out
    task names: /job:worker/replica:0/task:1") instead. There is no public
    API for either setting. Call it before TensorFlow runs any op.

    Args:
        cluster_spec: `tf.train.ClusterSpec` of `TF_CONFIG`.
        timeout_seconds: positive number.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    jobs = [coordination_config_pb2.CoordinatedJob(
                name=job, num_tasks=cluster_spec.num_tasks(job))
            for job in ("chief", "worker") if job in cluster_spec.jobs]
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster_spec),
        coordinated_jobs=jobs,
        cluster_register_timeout_in_ms=int(timeout_seconds * 1000),
    )
    context.context().coordination_service.cluster_register_with_barrier = True
