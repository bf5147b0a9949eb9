"""The optimizer step of a trainable artifact, as Keras computes it.

Each update is `keras.optimizers.SGD` (no momentum), `Adam` or `AdamW`'s,
written in the TensorFlow ops LiteRT runs, on state held in variables of the
artifact: Adam's moments per factor and the step count. Keras' order:
decoupled weight decay (`w -= w * weight_decay * lr`) first, then the step.
"""

from keras_lowrank.utils.optional import tensorflow as tf


class OptimizerState(tf.Module):
    """The optimizer's variables for `variables`, under `options`.

    Args:
        variables: the trained `tf.Variable`s.
        options: an `OnDeviceTraining`.
    """

    def __init__(self, variables, options):
        super().__init__(name="optimizer")
        self.options = options
        self.iterations = tf.Variable(0.0, name="iterations")
        self.momentums, self.velocities = [], []
        if options.optimizer != "sgd":
            for variable in variables:
                self.momentums.append(tf.Variable(tf.zeros_like(variable), name="m"))
                self.velocities.append(tf.Variable(tf.zeros_like(variable), name="v"))

    def apply(self, variables, gradients):
        """Assigns one step to `variables`; returns the assign ops."""
        options = self.options
        lr = tf.constant(options.learning_rate, tf.float32)
        updates = []
        if options.weight_decay:
            decay = tf.constant(options.weight_decay, tf.float32)
            updates += [v.assign_sub(v * decay * lr) for v in variables]
        with tf.control_dependencies(updates):
            if options.optimizer == "sgd":
                steps = [v.assign_sub(g * lr) for v, g in zip(variables, gradients)]
            else:
                steps = self._adam(variables, gradients, lr)
        with tf.control_dependencies(steps):
            return [self.iterations.assign_add(1.0)]

    def _adam(self, variables, gradients, lr):
        options = self.options
        step = self.iterations + 1.0
        beta_1 = tf.constant(options.beta_1, tf.float32)
        beta_2 = tf.constant(options.beta_2, tf.float32)
        alpha = lr * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
        steps = []
        for v, g, m, u in zip(variables, gradients, self.momentums, self.velocities):
            m_new = m.assign_add((g - m) * (1.0 - beta_1))
            u_new = u.assign_add((tf.square(g) - u) * (1.0 - beta_2))
            steps.append(v.assign_sub(m_new * alpha / (tf.sqrt(u_new) + options.epsilon)))
        return steps
