"""The `keras-lowrank` command line."""
