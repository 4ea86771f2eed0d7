"""Loading candidate source inside the sandbox (never in the service process)."""

from __future__ import annotations

import types

from torch import nn


def load_layer(source: str, class_name: str) -> type[nn.Module]:
    """Execute the module source and return its layer class."""
    module = types.ModuleType("candidate")
    module.__file__ = "candidate.py"
    code = compile(source, "candidate.py", "exec")
    exec(code, module.__dict__)  # runs inside the sandbox child only
    layer = module.__dict__.get(class_name)
    if not isinstance(layer, type) or not issubclass(layer, nn.Module):
        raise TypeError(f"{class_name!r} is not a torch.nn.Module subclass")
    return layer
