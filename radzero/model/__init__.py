"""Pure-PyTorch RadZero: VL-CABS, MP-NCE, the model and its checkpoints (no Ray here)."""

from radzero.model.config import RadZeroConfig, get_model_config, list_models
from radzero.model.loss import mp_nce_loss
from radzero.model.preprocess import PreprocessConfig, resolve_preprocess
from radzero.model.radzero import RadZero, create_model
from radzero.model.vlcabs import vlcabs

__all__ = [
    "PreprocessConfig",
    "RadZero",
    "RadZeroConfig",
    "create_model",
    "get_model_config",
    "list_models",
    "mp_nce_loss",
    "resolve_preprocess",
    "vlcabs",
]
