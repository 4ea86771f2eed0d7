"""Models built from the kernels (FLA's `fla.models`): asiarch's fixed language-model backbone.

`LanguageModel` is the model every candidate layer is trained in (the engineer) and the one an
exported layer runs in (`asiarch results export` copies this package, so it imports only torch).
"""

from .backbone import LanguageModel, mixer_output

__all__ = ["LanguageModel", "mixer_output"]
