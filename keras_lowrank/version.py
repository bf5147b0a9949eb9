"""The version of keras_lowrank, recorded in every adapter file and report."""

__version__ = "0.1.0"
