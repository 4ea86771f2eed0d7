"""Multi-query associative recall (MQAR), after Zoology (Arora et al., 2023).

A sequence starts with kv_pairs key-value pairs (keys from [1, V/2), values
from [V/2, V)); later, keys reappear as queries at power-law distributed
positions and the model must output the value that followed each key; every
other position is the filler token 0. Only the token after each query is
scored, so chance is 2/V. It isolates the one ability that
separates linear-attention designs most: recalling a specific earlier token.
"""

from __future__ import annotations

import torch

IGNORE = -100


def generate(
    batch: int, seq_len: int, kv_pairs: int, vocab: int, generator: torch.Generator, power_a: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs [batch, seq_len], labels [batch, seq_len]) with labels IGNORE except after queries."""
    if 4 * kv_pairs > seq_len:
        raise ValueError(f"MQAR needs 4 * kv_pairs <= seq_len, got kv_pairs={kv_pairs}, seq_len={seq_len}")
    if vocab // 2 - 1 < kv_pairs:
        raise ValueError(f"MQAR needs vocab // 2 - 1 >= kv_pairs distinct keys, got vocab={vocab}")
    half = vocab // 2
    context = 2 * kv_pairs
    keys = torch.stack([torch.randperm(half - 1, generator=generator)[:kv_pairs] + 1 for _ in range(batch)])
    values = torch.randint(half, vocab, (batch, kv_pairs), generator=generator)
    inputs = torch.zeros((batch, seq_len), dtype=torch.long)  # Zoology's filler: token 0
    labels = torch.full((batch, seq_len), IGNORE, dtype=torch.long)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values

    # Query slots are pairs (query, answer) after the context; gaps follow a power law.
    slots = (seq_len - context) // 2
    weights = power_a * torch.arange(1, slots + 1, dtype=torch.float64) ** (power_a - 1)
    for row in range(batch):
        chosen = torch.multinomial(weights, kv_pairs, replacement=False, generator=generator)
        positions = context + 2 * chosen
        order = torch.randperm(kv_pairs, generator=generator)
        inputs[row, positions] = keys[row, order]
        inputs[row, positions + 1] = values[row, order]
        labels[row, positions] = values[row, order]
    return inputs, labels
