"""Candidate layers for the engineer tests: a good one and hostile or broken variants."""

from __future__ import annotations

from pathlib import Path

from asiarch.engineer.budgets import resolve

BASELINES = Path(__file__).resolve().parents[2] / "services" / "engineer" / "baselines"

TEMPLATE = """
import torch
from torch import nn


class DeltaNet(nn.Module):
    def __init__(self, hidden_size, num_heads, **kwargs):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)
        {init}

    def forward(self, hidden_states, **kwargs):
        x = self.proj(hidden_states)
        {forward}
"""

# A causal running mean: linear time, trains, passes every check.
GOOD_FORWARD = """counts = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        return torch.cumsum(x, dim=1) / counts, None"""


# The budget of a job run straight in the sandbox (no service resolving a request in front): a small model.
SANDBOX_BUDGET = resolve("smoke", {"n_layers": 2, "max_parameters": 10_000_000})


def layer(forward: str = GOOD_FORWARD, init: str = "pass", prelude: str = "") -> str:
    return prelude + TEMPLATE.replace("{init}", init).replace("{forward}", forward)


def baseline(name: str) -> str:
    return (BASELINES / f"{name}.py").read_text()


GOOD = layer()
NON_CAUSAL = layer("return x + x.mean(dim=1, keepdim=True), None")
QUADRATIC = layer(  # causal softmax attention without heads: correct, but T x T
    """scores = x @ x.transpose(1, 2)
        mask = torch.ones_like(scores, dtype=torch.bool).tril()
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ x, None"""
)
NAN = layer("return x * float('nan'), None")
WRONG_SHAPE = layer("return x[:, :, :-1], None")
INFINITE_LOOP = layer("while True:\n            pass")
MEMORY_BOMB = layer("hog = [torch.ones(1 << 28) for _ in range(64)]\n        return x, None")
STDOUT_FLOOD = layer("while True:\n            print('x' * 100000)")
RECURSION = layer("return self.forward(hidden_states), None")
OS_SYSTEM = layer("import os\n        os.system('echo pwned')\n        return x, None")
FORK_BOMB = layer("import os\n        while True:\n            os.fork()")
SOCKET = layer("import socket\n        socket.create_connection(('1.1.1.1', 53))\n        return x, None")
WRITE_OUTSIDE = layer("open('/tmp/asiarch-escape', 'w').write('x')\n        return x, None")
CTYPES = layer("import ctypes\n        ctypes.string_at(0)\n        return x, None")
EVAL = layer("return eval('x'), None")
SYNTAX_ERROR = "import torch\nclass DeltaNet(torch.nn.Module:\n    pass\n"
