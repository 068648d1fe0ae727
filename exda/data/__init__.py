"""Data: image I/O, dataset layouts, on-the-fly degraded datasets, offline sample photos, dead-leaves images."""

from exda.data.datasets import (
    CleanImage,
    ImagePair,
    MixedDataset,
    PairedFileDataset,
    RestorationDataset,
    SyntheticDataset,
    collate_restoration,
)
from exda.data.dead_leaves import dead_leaves
from exda.data.io import IMAGE_SUFFIXES, LoadedImage, list_images, load_image, save_image, to_numpy, to_tensor
from exda.data.layouts import LAYOUTS, build_dataset, pair_folders
from exda.data.samples import SampleInfo, export_samples, list_samples, load_sample
from exda.data.transforms import PairTransform

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "CleanImage",
    "ImagePair",
    "LoadedImage",
    "MixedDataset",
    "PairTransform",
    "PairedFileDataset",
    "RestorationDataset",
    "SampleInfo",
    "SyntheticDataset",
    "build_dataset",
    "collate_restoration",
    "dead_leaves",
    "export_samples",
    "list_samples",
    "list_images",
    "load_image",
    "load_sample",
    "pair_folders",
    "save_image",
    "to_numpy",
    "to_tensor",
]
