"""The byte-level language-modelling corpus.

Default: the running Python's own standard-library sources. They are always
there, need no network, are a few tens of megabytes of real, varied text, and
every engineer on the same Python version trains on the same bytes. Any folder
of text files can replace them (ASIARCH_ENGINEER_CORPUS_DIR).

The split is by file (a hash of the relative path), so held-out bytes come
from files the model never saw, not from the middle of a file it trained on.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

TEXT_SUFFIXES = {".py", ".txt", ".md", ".rst", ".json", ".toml", ".cfg", ".html", ".c", ".h"}
MAX_BYTES = 16 * 1024 * 1024
HELD_OUT_EVERY = 10  # one file in ten is validation
# Installed packages and test suites are not part of the corpus, at any depth.
SKIPPED_FOLDERS = frozenset({"site-packages", "test", "tests"})


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8 bytes
    validation: torch.Tensor
    source: str


def default_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _held_out(relative: str) -> bool:
    digest = hashlib.sha256(relative.encode()).digest()
    return digest[0] % HELD_OUT_EVERY == 0


def _text_files(base: Path) -> list[Path]:
    """The text files under `base`, sorted by path, outside SKIPPED_FOLDERS. The walk never enters those
    folders: site-packages alone holds most of an installation's files (a second of listing per load)."""
    if SKIPPED_FOLDERS & set(base.parts):
        return []
    found: list[Path] = []
    for folder, subfolders, names in os.walk(base):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
        found.extend(Path(folder, name) for name in names if Path(name).suffix in TEXT_SUFFIXES)
    return sorted(path for path in found if path.is_file())


def load_corpus(root: str | None = None, max_bytes: int = MAX_BYTES) -> Corpus:
    base = Path(root) if root else default_root()
    if not base.is_dir():
        raise FileNotFoundError(f"corpus directory {base} does not exist")
    train: list[bytes] = []
    validation: list[bytes] = []
    total = 0
    for path in _text_files(base):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        (validation if _held_out(str(path.relative_to(base))) else train).append(data)
        total += len(data)
        if total >= max_bytes:
            break
    if not train or not validation:
        raise ValueError(f"corpus directory {base} has too little text ({total} bytes)")

    def tensor(parts: list[bytes]) -> torch.Tensor:
        return torch.frombuffer(bytearray(b"\n".join(parts)), dtype=torch.uint8).clone()

    return Corpus(tensor(train), tensor(validation), str(base))


def batches(data: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Random windows of length + 1 bytes (inputs and next-byte targets), as int64."""
    starts = torch.randint(0, data.numel() - length - 1, (batch,), generator=generator)
    return torch.stack([data[s : s + length + 1] for s in starts.tolist()]).long()
