"""FLA's layer/model utilities (fla.layers.utils, fla.models.utils) without transformers."""

from .cache import Cache, get_layer_cache, require_cache_layer_idx, update_layer_cache
from .padding import get_unpad_data, index_first_axis, index_put_first_axis, pad_input, unpad_input

__all__ = [
    "Cache",
    "get_layer_cache",
    "get_unpad_data",
    "index_first_axis",
    "index_put_first_axis",
    "pad_input",
    "require_cache_layer_idx",
    "unpad_input",
    "update_layer_cache",
]
