"""Inference: load a checkpoint of any kind once, and restore tensors, arrays and image files with it."""
