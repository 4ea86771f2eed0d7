"""A spinner on stderr for the steps of a results command that can take over a second.

It never touches stdout (so `--json` output and pipes stay clean) and draws nothing when stderr is
not a terminal (logs and tests see no control characters). `spinner` yields a function that
changes the message as the command moves on to its next step.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

Say = Callable[[str], None]


def quiet(message: str) -> None:
    """A `Say` that shows nothing (no terminal, or a caller that wants no spinner)."""


@contextlib.contextmanager
def spinner(message: str) -> Iterator[Say]:
    if not sys.stderr.isatty():
        yield quiet
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as status:
        yield lambda text: status.update(text)
