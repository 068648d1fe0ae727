"""Data: image I/O, dataset layouts, on-the-fly degraded datasets and offline sample photos."""

from exda.data.datasets import (
    CleanImage,
    ImagePair,
    MixedDataset,
    PairedFileDataset,
    RestorationDataset,
    SyntheticDataset,
    collate_restoration,
)
from exda.data.io import IMAGE_SUFFIXES, LoadedImage, list_images, load_image, save_image, to_numpy, to_tensor
from exda.data.layouts import LAYOUTS, build_dataset, pair_folders
from exda.data.samples import SampleInfo, export_samples, list_samples, load_sample, opencv_photos
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
    "export_samples",
    "list_samples",
    "list_images",
    "load_image",
    "load_sample",
    "opencv_photos",
    "pair_folders",
    "save_image",
    "to_numpy",
    "to_tensor",
]
