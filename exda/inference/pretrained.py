"""The default models shipped inside the package (``exda/weights/``), and which one an input gets.

``photo``: one small network for natural-image degradations and their mixtures (3 channels): the long run's
plain twin, with both ExDA primitives off, which restored better than the ExDA network at that scale.
``medical``: a smaller 1-channel ExDA network for MRI / CT / PET degradations. How each was trained,
and how well it does: docs/model_card.md.
"""

from __future__ import annotations

from pathlib import Path

from exda.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODELS: dict[str, str] = {"photo": "exda_photo", "medical": "exda_medical"}
MEDICAL_SUFFIXES = (".dcm", ".dicom", ".nii", ".nii.gz")


def default_checkpoint(kind: str) -> Path:
    """The shipped ``.safetensors`` file of default model ``kind`` ("photo" or "medical")."""
    if kind not in DEFAULT_MODELS:
        raise UserError(f"unknown default model '{kind}' (choose from {', '.join(DEFAULT_MODELS)})")
    path = WEIGHTS_DIR / f"{DEFAULT_MODELS[kind]}.safetensors"
    if not path.is_file():
        raise UserError(f"the default {kind} model is not installed ({path}); pass --checkpoint")
    return path


def default_kind(suffix: str) -> str:
    """Which default model an input file gets from its type: DICOM and NIfTI are medical."""
    return "medical" if suffix in MEDICAL_SUFFIXES else "photo"
