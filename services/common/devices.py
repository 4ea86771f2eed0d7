"""The torch devices an evaluation may name (`Budget.device` in the contract).

One grammar for the engineer's budget check and settings and for every command's `--device`,
so a client refuses at parse time exactly what the engineer would refuse later.
"""

from __future__ import annotations

import re

DEVICE_PATTERN = re.compile(r"cpu|cuda(?::\d+)?")
DEVICES = "'cpu', 'cuda' or 'cuda:N'"
