"""fla.models.utils (Cache only), served by asiarch.kernels.utils.cache."""

from asiarch.kernels.utils.cache import Cache

__all__ = ["Cache"]
