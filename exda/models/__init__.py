"""Model registry (filled in by the foundation work)."""
from exda.models.registry import ModelTraits, create_model, list_models, model_traits, register_model

__all__ = ["ModelTraits", "create_model", "list_models", "model_traits", "register_model"]
