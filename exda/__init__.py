"""exda: all-in-one blind image restoration with ExDA attention.

The two ExDA primitives live in :mod:`exda.layers`; networks in :mod:`exda.models`.
"""

from exda.models import create_model, list_models
from exda.models.official import load_pretrained

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load_pretrained", "__version__"]
