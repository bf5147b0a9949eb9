"""`make bench`: LoRA vs full fine-tuning vs keras-hub LoRA vs PEFT on MiniLM.

`run.py` runs each measurement in its own subprocess (one module here per
kind of measurement) and writes `results.json` and `RESULTS.md`. Nothing in
this package imports TensorFlow at import time: the PEFT child runs under a
PyTorch interpreter.
"""
