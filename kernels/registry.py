"""What the kernel library offers, as data (no torch import): for `ListKernels` and docs."""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("linear_attn", "simple_gla", "delta_rule", "gated_delta_rule")


@dataclass(frozen=True)
class KernelEntry:
    name: str
    family: str
    form: str  # "chunk", "fused_recurrent" or "naive"
    devices: tuple[str, ...]
    has_backward: bool
    fla_name: str


def kernels() -> list[KernelEntry]:
    entries = []
    for family in FAMILIES:
        for form in ("chunk", "fused_recurrent"):
            name = f"{form}_{family}"
            entries.append(
                KernelEntry(
                    name=name,
                    family=family,
                    form=form,
                    # CUDA runs the Triton kernels; the CPU runs the chunked PyTorch path.
                    devices=("cpu", "cuda"),
                    has_backward=True,
                    fla_name=f"fla.ops.{family}.{name}",
                )
            )
        entries.append(KernelEntry(f"naive_recurrent_{family}", family, "naive", ("cpu", "cuda"), True, ""))
    for name, fla in (
        ("l2norm", "fla.modules.l2norm.l2norm"),
        ("RMSNorm", "fla.modules.RMSNorm"),
        ("FusedRMSNormGated", "fla.modules.FusedRMSNormGated"),
        ("ShortConvolution", "fla.modules.ShortConvolution"),
    ):
        entries.append(KernelEntry(name, "modules", "module", ("cpu", "cuda"), True, fla))
    return sorted(entries, key=lambda e: (e.family, e.name))
