"""fla.layers.utils, served by asiarch.kernels.utils."""

from asiarch.kernels.utils import (
    get_layer_cache,
    get_unpad_data,
    index_first_axis,
    index_put_first_axis,
    pad_input,
    require_cache_layer_idx,
    unpad_input,
    update_layer_cache,
)

__all__ = [
    "get_layer_cache",
    "get_unpad_data",
    "index_first_axis",
    "index_put_first_axis",
    "pad_input",
    "require_cache_layer_idx",
    "unpad_input",
    "update_layer_cache",
]
