"""Analyses of a trained restoration model (``exda analyze``): foundation-model embeddings, power
spectra of images and features, and how separable degradations are in its descriptors.

Each analysis writes a JSON record and a matplotlib figure into an output folder.
"""
