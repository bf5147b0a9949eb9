"""The `tf.Module` a trainable artifact is converted from.

It holds the trained weights (LoRA factors and any kept head) as variables
and the optimizer's state beside them; the rest of the model is constant.
The model runs through `keras.Model.stateless_call` with the variables'
values, so the frozen base is folded into the graph as constants and only
the trained weights remain variables in LiteRT. Four signatures:

- `infer`: the model inputs -> `logits`;
- `train`: the model inputs, `labels` (and `loss_mask` for a causal LM) ->
  `loss`, one optimizer step (`optimizers.OptimizerState`);
- `save`: -> every trained weight, named by its adapter-file key;
- `restore`: those weights -> set (the optimizer state is kept).

Dropout is off in every signature (`training=False`).
"""

import re

import numpy as np

from keras_lowrank.on_device import losses
from keras_lowrank.on_device.gradients import builtin_gradients
from keras_lowrank.on_device.optimizers import OptimizerState
from keras_lowrank.utils.optional import tensorflow as tf

CLASSIFIER, CAUSAL_LM = "classifier", "causal_lm"


class TrainableModule(tf.Module):
    """The signatures of a trainable artifact over an adapted Keras model.

    Args:
        model: the adapted keras.Model (TensorFlow backend).
        weights: `{adapter-file key: keras Variable}`, every trainable
            weight of `model` (`keras_lowrank.adapters.files.file_weights`).
        input_specs: `{name: tf.TensorSpec}` with the fixed `[B, T]` shapes.
        task: `CLASSIFIER` or `CAUSAL_LM`.
        options: an `OnDeviceTraining`.
    """

    def __init__(self, model, weights, input_specs, task, options):
        super().__init__(name="on_device_training")
        order = {id(v): i for i, v in enumerate(model.trainable_variables)}
        self._keys = sorted(weights, key=lambda k: order[id(weights[k])])
        self.trained = [
            tf.Variable(np.asarray(weights[k].numpy()), name=re.sub(r"\W", "_", k))
            for k in self._keys
        ]
        self.optimizer = OptimizerState(self.trained, options)
        frozen = [tf.constant(np.asarray(v.numpy())) for v in model.non_trainable_variables]
        # Closures, not attributes: the module must track only the trained
        # variables and the optimizer state, or the SavedModel would hold
        # the whole model's variables too.
        self._logits = lambda values, inputs: _logits(model, frozen, values, inputs)
        self._task = task
        batch = next(iter(input_specs.values())).shape
        label_shape = batch[:1] if task == CLASSIFIER else batch[:2]
        train_specs = {
            **input_specs, "labels": tf.TensorSpec(label_shape, tf.int32, name="labels")}
        if task == CAUSAL_LM:
            train_specs["loss_mask"] = tf.TensorSpec(batch[:2], tf.float32, name="loss_mask")
        factor_specs = {
            name: tf.TensorSpec(v.shape, v.dtype, name=name)
            for name, v in zip(self._keys, self.trained)
        }
        self.infer = tf.function(self._infer, input_signature=[input_specs])
        self.train = tf.function(self._train, input_signature=[train_specs])
        self.save = tf.function(self._save, input_signature=[])
        self.restore = tf.function(self._restore, input_signature=[factor_specs])

    @property
    def keys(self):
        """The adapter-file keys of the trained weights, in variable order:
        also their names in `save` and `restore` (LiteRT takes any string,
        `/` included)."""
        return tuple(self._keys)

    def signatures(self):
        return {
            "infer": self.infer.get_concrete_function(),
            "train": self.train.get_concrete_function(),
            "save": self.save.get_concrete_function(),
            "restore": self.restore.get_concrete_function(),
        }

    def _infer(self, inputs):
        return {"logits": self._logits([v.read_value() for v in self.trained], inputs)}

    def _train(self, batch):
        batch = dict(batch)
        labels = batch.pop("labels")
        loss_mask = batch.pop("loss_mask", None)
        values = [v.read_value() for v in self.trained]
        with builtin_gradients():
            logits = self._logits(values, batch)
            if self._task == CLASSIFIER:
                loss = losses.classifier_loss(logits, labels)
            else:
                loss = losses.causal_lm_loss(logits, labels, loss_mask)
        gradients = tf.gradients(loss, values)
        with tf.control_dependencies(self.optimizer.apply(self.trained, gradients)):
            return {"loss": tf.identity(loss)}

    def _save(self):
        return {name: v.read_value() for name, v in zip(self._keys, self.trained)}

    def _restore(self, factors):
        assigns = [v.assign(factors[name]) for name, v in zip(self._keys, self.trained)]
        with tf.control_dependencies(assigns):
            return {"restored": tf.constant(len(assigns), tf.int32)}


def _logits(model, frozen, values, inputs):
    logits, _ = model.stateless_call(values, frozen, inputs, training=False)
    return tf.cast(logits, tf.float32)
