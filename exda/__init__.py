"""exda: all-in-one blind image restoration with ExDA attention.

The two ExDA primitives live in :mod:`exda.layers`; networks in :mod:`exda.models`. One call restores an
image (:func:`restore`, as ``exda restore`` does); :func:`optimize_for_inference` puts any network on the
fast inference path.
"""

from exda.inference.api import restore
from exda.inference.fast import optimize_for_inference
from exda.inference.loader import load_pretrained
from exda.models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load_pretrained", "optimize_for_inference", "restore", "__version__"]
