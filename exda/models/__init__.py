"""Networks built from ``exda.layers``, one module per family, and the one explicit registry of them.

Each family module registers its variants on import; the list of families below is explicit, not a
folder scan, and importing anything under ``exda.models`` registers them all.
"""

from exda.models import adair, airnet, amir, histoformer, moce_ir, restormer  # noqa: F401
from exda.models.registry import ModelTraits, create_model, list_models, model_traits, register_model

__all__ = ["ModelTraits", "create_model", "list_models", "model_traits", "register_model"]
