"""Model registry (filled in by the foundation work)."""
from exda.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
