"""The pretrained models the project ships with, from registry packages.

- `presets`: where MiniLM and SmolLM2 live on this machine (`klr.presets`).
- `gguf_folder`: a llama.cpp GGUF file as a Hugging Face model folder.
"""
