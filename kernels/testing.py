"""The one tolerance helper for kernel tests (FLA's convention).

Errors are compared as a relative RMS: rms(ref - out) / rms(ref). A single
ratio per tensor reads the same for outputs, states and gradients, does not
blow up on entries near zero the way elementwise relative error does, and is
what FLA's own tests report, so our tolerances are directly comparable.
"""

from __future__ import annotations

import torch


def rms(x: torch.Tensor) -> float:
    return x.double().pow(2).mean().sqrt().item()


def error_ratio(reference: torch.Tensor, output: torch.Tensor) -> float:
    """rms(reference - output) / rms(reference); inf when output has NaN/inf."""
    if not torch.isfinite(output).all():
        return float("inf")
    scale = rms(reference)
    diff = rms(reference.double() - output.double())
    return diff / scale if scale > 0 else diff


def assert_close(name: str, reference: torch.Tensor, output: torch.Tensor, ratio: float) -> None:
    """Fail with the measured ratio when output differs from reference by more than ratio (relative RMS)."""
    assert reference.shape == output.shape, f"{name}: shape {tuple(output.shape)} != {tuple(reference.shape)}"
    measured = error_ratio(reference, output)
    assert measured <= ratio, f"{name}: relative RMS error {measured:.3e} exceeds {ratio:.1e}"
