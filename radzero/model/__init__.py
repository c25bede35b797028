"""Pure-PyTorch RadZero: VL-CABS, MP-NCE, the model and its checkpoints (no Ray here)."""

from radzero.model.backbone import BackboneGeometry, backbone_geometry
from radzero.model.config import (
    RadZeroConfig,
    check_model_reference,
    get_model_config,
    list_models,
    resolve_model_config,
)
from radzero.model.loss import mp_nce_loss
from radzero.model.preprocess import PreprocessConfig, resolve_preprocess
from radzero.model.radzero import RadZero, copy_pretrained, create_model
from radzero.model.vlcabs import vlcabs

__all__ = [
    "BackboneGeometry",
    "PreprocessConfig",
    "RadZero",
    "RadZeroConfig",
    "backbone_geometry",
    "check_model_reference",
    "copy_pretrained",
    "create_model",
    "get_model_config",
    "list_models",
    "mp_nce_loss",
    "resolve_model_config",
    "resolve_preprocess",
    "vlcabs",
]
