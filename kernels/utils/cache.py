"""Per-layer state store for step-by-step generation (fla.models.utils.Cache).

A linear-attention layer with `use_cache=True` stores, per layer, its recurrent
state ([B, H, K, V]), its short-convolution caches (a tuple, one [B, D, W] per
conv), and, for hybrid models, attention keys/values and FFN state. FLA layers
read it back with `past_key_values[layer_idx]` and write it with
`past_key_values.update(..., layer_idx=..., offset=q_len)`; this class provides
exactly that surface, with FLA's semantics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

STATE_KEYS = ("recurrent_state", "attn_state", "conv_state", "ffn_state")


def _empty_state() -> dict[str, Any]:
    return dict.fromkeys(STATE_KEYS)


class Cache:
    """Per-layer dicts {recurrent_state, attn_state, conv_state, ffn_state} plus seen-token counts.

    FLA's Cache subclasses `transformers.cache_utils.Cache` so that Hugging Face
    `generate()` accepts it. This one is a plain class on purpose: transformers
    is not a dependency of the kernel library (importing it alone takes seconds),
    and its Cache base class changes shape between releases (FLA carries
    version switches for it). FLA layers only use the methods below, so they run
    unchanged; driving `generate()` itself is out of scope.

    Token counts are per layer, as in FLA 0.5: each `update` adds `offset` (or,
    when attention keys/values are given, their length) to that layer's count.
    """

    is_compileable = True

    def __init__(self, seen_tokens: int = 0, **kwargs: Any) -> None:
        self.states: list[dict[str, Any]] = []
        self._seen_tokens = int(seen_tokens)
        self._layer_seen: list[int] = []

    def __getitem__(self, layer_idx: int) -> dict[str, Any]:
        if not 0 <= layer_idx < len(self.states):
            raise KeyError(f"Cache only has {len(self.states)} layers, attempted to access layer {layer_idx}")
        return self.states[layer_idx]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.states

    def __len__(self) -> int:
        return len(self.states)

    def update(
        self,
        recurrent_state: torch.Tensor | tuple[torch.Tensor, ...] | None = None,
        attn_state: tuple[torch.Tensor, ...] | None = None,
        conv_state: Any | None = None,
        ffn_state: Any | None = None,
        layer_idx: int = 0,
        offset: int | None = 1,
        cache_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store the given (non-None) states for `layer_idx` and return that layer's dict.

        attn_state ([B, T, ...] tensors) is appended along T; with
        cache_kwargs={'window_size': w} only the last w positions are kept.
        """
        if attn_state is not None and not isinstance(attn_state, tuple | list):
            raise ValueError("`attn_state` must be a tuple/list of tensors")
        while len(self.states) <= layer_idx:
            self.states.append(_empty_state())
            self._layer_seen.append(self._seen_tokens)
        state = self.states[layer_idx]
        window_size = (cache_kwargs or {}).get("window_size")

        if recurrent_state is not None:
            state["recurrent_state"] = recurrent_state
        has_attn = bool(attn_state) and attn_state[0] is not None
        if has_attn:
            state["attn_state"] = self._append_attn(state["attn_state"], tuple(attn_state), window_size)
        if conv_state is not None:
            state["conv_state"] = conv_state
        if ffn_state is not None:
            state["ffn_state"] = ffn_state

        self._layer_seen[layer_idx] += (
            attn_state[0].shape[1] if has_attn else (1 if offset is None else offset)
        )
        return state

    @staticmethod
    def _append_attn(
        old: tuple[torch.Tensor, ...] | None,
        new: tuple[torch.Tensor, ...],
        window_size: int | None,
    ) -> tuple[torch.Tensor, ...]:
        if old is None:
            if window_size is not None and new[0].shape[1] > window_size:
                return tuple(x[:, -window_size:].contiguous() for x in new)
            return new
        if window_size is not None and old[0].shape[1] >= window_size:
            # A full window: shift left by the new length and write the new tail,
            # keeping the buffer's size (FLA does the same).
            rolled = []
            for old_x, new_x in zip(old, new, strict=True):
                buf = old_x.roll(-new_x.shape[1], dims=1)
                tail = new_x[:, -window_size:]
                buf[:, -tail.shape[1] :] = tail
                rolled.append(buf)
            return tuple(rolled)
        return tuple(torch.cat([old_x, new_x], dim=1) for old_x, new_x in zip(old, new, strict=True))

    def get_seq_length(self, layer_idx: int | None = 0, cache_position: torch.Tensor | None = None) -> int:
        """Tokens seen by `layer_idx` (0 when that layer has stored nothing yet)."""
        layer_idx = layer_idx or 0
        return self._layer_seen[layer_idx] if layer_idx < len(self._layer_seen) else 0

    def get_max_cache_shape(self, layer_idx: int = 0) -> int:
        """Recurrent states have no maximum length; -1, as FLA returns."""
        return -1

    def to_legacy_cache(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.states)

    @classmethod
    def from_legacy_cache(
        cls,
        past_key_values: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None,
        seen_tokens: int = 0,
        **kwargs: Any,
    ) -> Cache:
        """Rebuild a Cache from `to_legacy_cache()` output; every layer starts at `seen_tokens`."""
        cache = cls(seen_tokens=seen_tokens, **kwargs)
        for layer_state in past_key_values or ():
            cache.states.append({**_empty_state(), **dict(layer_state)})
            cache._layer_seen.append(cache._seen_tokens)
        return cache


def require_cache_layer_idx(module: Any, past_key_values: Cache | None) -> int | None:
    """The module's `layer_idx`; an error if a cache is given but the module has no index."""
    layer_idx = getattr(module, "layer_idx", None)
    if past_key_values is not None and layer_idx is None:
        raise ValueError(
            f"{module.__class__.__name__} requires `layer_idx` when `past_key_values` is provided."
        )
    return layer_idx


def get_layer_cache(module: Any, past_key_values: Cache | None) -> dict[str, Any] | None:
    """The state dict stored for `module.layer_idx`, or None (fla.layers.utils.get_layer_cache)."""
    layer_idx = require_cache_layer_idx(module, past_key_values)
    if past_key_values is not None and len(past_key_values) > layer_idx:
        return past_key_values[layer_idx]
    return None


def update_layer_cache(module: Any, past_key_values: Cache | None, **kwargs: Any) -> Cache | None:
    """past_key_values.update(layer_idx=module.layer_idx, **kwargs) when a cache is given."""
    layer_idx = require_cache_layer_idx(module, past_key_values)
    if past_key_values is not None:
        past_key_values.update(layer_idx=layer_idx, **kwargs)
    return past_key_values
