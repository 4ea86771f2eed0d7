"""Render an `ArchitectureSpec` as the Python source of a layer that meets the engineer's contract.

The rendered module defines `class <class_name>(nn.Module)` built as
`cls(hidden_size, num_heads, **kwargs)` whose `forward(hidden_states [B, T, D])`
returns `(output [B, T, D], None)`. It imports only torch, math, einops and
`asiarch.kernels`, and avoids everything `run_static_checks` rejects. The code
is written to be read (by people and by the LLM that proposes the next
mutation), so every option leaves a comment saying what it does.
"""

from __future__ import annotations

from asiarch.common.contract import DEFAULT_CLASS_NAME

from .spec import ArchitectureSpec, MixerSpec

_FEATURE_MAP_CODE: dict[str, tuple[str, str]] = {
    # feature map -> (expression template over {x}, comment)
    "identity": ("{x}", "identity feature map: q and k are used as projected"),
    "elu_plus_one": ("F.elu({x}) + 1", "elu + 1 feature map: positive features, as in linear attention"),
    "relu": ("F.relu({x})", "relu feature map: non-negative, sparse features"),
    "silu": ("F.silu({x})", "silu feature map: smooth, mostly positive features"),
    "softmax_dim": ("{x}.softmax(dim=-1)", "softmax over the head dimension: features on the simplex"),
}


class _Source:
    """Indented line accumulator; keeps the rendering code free of manual indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend(("    " * indent + line) if line else "" for line in lines)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _kernel_name(mixer: MixerSpec) -> str:
    return f"chunk_{mixer.kind}"


def _needs_math(spec: ArchitectureSpec) -> bool:
    return any(m.gate == "mamba2" for m in spec.mixers)


def _kernel_imports(spec: ArchitectureSpec) -> list[str]:
    names = {_kernel_name(m) for m in spec.mixers}
    if spec.conv_sizes:
        names.add("ShortConvolution")
    if any(m.qk_norm == "l2" for m in spec.mixers):
        names.add("l2norm")
    if spec.output_norm == "rmsnorm":
        names.add("FusedRMSNormGated" if spec.output_gate == "swish" else "RMSNorm")
    # Upper-case (classes) first, as isort orders them.
    return sorted(names, key=lambda n: (not n[0].isupper(), n))


def _render_conv_init(src: _Source, spec: ArchitectureSpec) -> None:
    sizes = spec.conv_sizes
    if not sizes:
        src.add(2, "# No short convolution: q, k and v see only the current token before mixing.")
        return
    if len(sizes) == 1:
        src.add(
            2,
            f"# Short causal convolution (width {sizes[0]}) on q, k and v: cheap local context",
            "# before mixing.",
        )
        for name, dim in (("q", "key_dim"), ("k", "key_dim"), ("v", "value_dim")):
            src.add(2, f'self.{name}_conv = ShortConvolution(self.{dim}, {sizes[0]}, activation="silu")')
        return
    src.add(
        2,
        f"# Multi-scale short causal convolutions (widths {', '.join(map(str, sizes))}), summed:",
        "# local patterns of several lengths, all causal.",
    )
    for name, dim in (("q", "key_dim"), ("k", "key_dim"), ("v", "value_dim")):
        src.add(
            2,
            f"self.{name}_convs = nn.ModuleList(",
            f'    [ShortConvolution(self.{dim}, size, activation="silu") for size in {sizes!r}]',
            ")",
        )


def _render_mixer_init(src: _Source, mixer: MixerSpec, suffix: str, label: str) -> None:
    src.add(2, f"# {label}: {mixer.kind}.")
    if mixer.gate == "mamba2":
        src.add(
            2,
            "# Mamba-2 decay: g = -exp(A) * softplus(x W + dt_bias), per head and token; A and dt",
            "# are initialised as in Mamba-2 so the initial memory spans tens to thousands of tokens.",
            f"self.a_proj{suffix} = nn.Linear(hidden_size, self.num_heads, bias=False)",
            f"self.A_log{suffix} = nn.Parameter(torch.log(torch.empty(self.num_heads).uniform_(1, 16)))",
            "dt = torch.exp(",
            "    torch.rand(self.num_heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)",
            ")",
            f"self.dt_bias{suffix} = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus",
        )
    elif mixer.gate == "sigmoid_log":
        src.add(
            2,
            "# GLA-style decay: g = log(sigmoid(x W)) / 16; the 1/16 keeps the initial decay near 1.",
            f"self.a_proj{suffix} = nn.Linear(hidden_size, self.num_heads, bias=False)",
        )
    elif mixer.gate == "fixed_per_head":
        src.add(
            2,
            "# Retention-style fixed decay: head h forgets at rate 2^-(5 + h); neither learned",
            "# nor data-dependent.",
            "self.register_buffer(",
            f'    "g_gamma{suffix}",',
            "    torch.log(1 - 2.0 ** (-5.0 - torch.arange(self.num_heads, dtype=torch.float32))),",
            "    persistent=False,",
            ")",
        )
    if mixer.beta in ("sigmoid", "sigmoid_times_two"):
        src.add(
            2,
            "# Delta-rule write strength beta, one per head and token.",
            f"self.b_proj{suffix} = nn.Linear(hidden_size, self.num_heads, bias=False)",
        )


def _render_gate_forward(src: _Source, mixer: MixerSpec, s: str, attr: str) -> list[str]:
    """Emit the decay of one mixer; returns the kernel arguments it adds."""
    if mixer.gate == "mamba2":
        src.add(
            2,
            f"g{s} = -self.A_log{attr}.float().exp() * F.softplus(",
            f"    self.a_proj{attr}(hidden_states).float() + self.dt_bias{attr}",
            ")",
        )
        return [f"g{s}"]
    if mixer.gate == "sigmoid_log":
        src.add(2, f"g{s} = F.logsigmoid(self.a_proj{attr}(hidden_states).float()) / 16")
        return [f"g{s}"]
    if mixer.gate != "fixed_per_head":
        return []
    if mixer.kind == "simple_gla":
        return [f"g_gamma=self.g_gamma{attr}"]
    src.add(
        2,
        "# The gated delta rule takes a per-token decay: broadcast the fixed one over",
        "# batch and time.",
        f"g{s} = self.g_gamma{attr}.view(1, 1, -1).expand(q.shape[0], q.shape[1], -1).contiguous()",
    )
    return [f"g{s}"]


def _render_beta_forward(src: _Source, mixer: MixerSpec, s: str, attr: str) -> list[str]:
    """Emit the delta-rule write strength of one mixer; returns the kernel arguments it adds."""
    if mixer.beta == "sigmoid":
        src.add(2, "# beta in (0, 1): each write partially replaces the old value stored under k.")
        src.add(2, f"beta{s} = self.b_proj{attr}(hidden_states).sigmoid()")
    elif mixer.beta == "sigmoid_times_two":
        src.add(
            2,
            "# beta in (0, 2): allows negative eigenvalues of the state transition (state tracking).",
            f"beta{s} = 2 * self.b_proj{attr}(hidden_states).sigmoid()",
        )
    elif mixer.beta == "constant_one":
        src.add(2, "# beta = 1: every write fully replaces the value stored under k.")
        src.add(2, f"beta{s} = q.new_ones(q.shape[:3])")
    return [f"beta{s}"] if mixer.beta != "none" else []


def _render_mixer_forward(src: _Source, mixer: MixerSpec, index: int, label: str, hybrid: bool) -> str:
    """Emit the forward code of one mixer; returns the name of its output variable.

    Locals get the mixer's index in a hybrid (q1, g2, ...); parameters of the second mixer
    end in `_2`, matching `_render_mixer_init`.
    """
    s = str(index) if hybrid else ""
    attr = "_2" if index == 2 else ""
    q, k, o = f"q{s}", f"k{s}", f"o{s}"
    src.add(2, f"# {label}: {mixer.kind}.")
    template, comment = _FEATURE_MAP_CODE[mixer.feature_map]
    src.add(2, f"# {comment}.")
    if mixer.feature_map != "identity" or hybrid:
        src.add(2, f"{q}, {k} = {template.format(x='q')}, {template.format(x='k')}")
    if mixer.qk_norm == "l2":
        src.add(2, "# L2-normalised q and k: unit-length keys keep the state update bounded.")
        src.add(2, f"{q}, {k} = l2norm({q}), l2norm({k})")
    args = [q, k, "v", *_render_gate_forward(src, mixer, s, attr), *_render_beta_forward(src, mixer, s, attr)]
    if mixer.kind == "linear_attn":
        if mixer.normalize:
            src.add(
                2, "# Normalised: o_t is divided by q_t . sum_{s<=t} k_s, keeping outputs on a stable scale."
            )
        else:
            src.add(2, "# Unnormalised: o_t = q_t^T S_t; the output norm (if any) controls the scale.")
        args.append(f"normalize={mixer.normalize}")
    src.add(2, f"{o}, _ = {_kernel_name(mixer)}({', '.join(args)})")
    return o


def _render_header(src: _Source, spec: ArchitectureSpec, class_name: str) -> None:
    """The module docstring, the imports and the class statement."""
    src.add(
        0,
        f'"""{class_name}: a token-mixing layer generated by the researcher\'s architecture DSL.',
        "",
        f"Spec: {spec.summary()}",
        "",
        "Layout inside the layer is [batch, time, heads, head_dim]; every operation is causal.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    )
    if _needs_math(spec):
        src.add(0, "import math", "")
    src.add(
        0,
        "import torch",
        "import torch.nn.functional as F",
        "from einops import rearrange",
        "from torch import nn",
        "",
        f"from asiarch.kernels import {', '.join(_kernel_imports(spec))}",
        "",
        "",
        f"class {class_name}(nn.Module):",
    )


def _render_projections_init(src: _Source, spec: ArchitectureSpec) -> None:
    """The start of `__init__`: heads, key and value widths, the q, k and v projections."""
    src.add(
        1,
        "def __init__(self, hidden_size: int = 256, num_heads: int = 4, **kwargs: object) -> None:",
        "    super().__init__()",
    )
    if spec.head_multiplier == 1:
        src.add(2, "self.num_heads = num_heads")
    else:
        src.add(
            2,
            f"# {spec.head_multiplier}x the model's heads: narrower heads, more independent memories.",
            f"self.num_heads = num_heads * {spec.head_multiplier}",
        )
    src.add(
        2,
        f"# Key (q/k) width is {spec.key_expand:g} x hidden_size,"
        f" value width {spec.value_expand:g} x hidden_size.",
        f"self.key_dim = int(hidden_size * {spec.key_expand})",
        f"self.value_dim = int(hidden_size * {spec.value_expand})",
        "if self.key_dim % self.num_heads or self.value_dim % self.num_heads:",
        "    raise ValueError(",
        '        f"key_dim={self.key_dim} and value_dim={self.value_dim} must both be divisible by "',
        '        f"{self.num_heads} heads"',
        "    )",
        "self.head_k_dim = self.key_dim // self.num_heads",
        "self.head_v_dim = self.value_dim // self.num_heads",
        "self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)",
        "self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)",
        "self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)",
    )


def _render_mixers_init(src: _Source, spec: ArchitectureSpec) -> None:
    """The parameters of the mixer, or of both mixers of a hybrid and their learned mix."""
    if spec.secondary is None:
        _render_mixer_init(src, spec.mixer, "", "Mixer")
        return
    _render_mixer_init(src, spec.mixer, "", "Hybrid, mixer 1")
    _render_mixer_init(src, spec.secondary, "_2", "Hybrid, mixer 2")
    src.add(
        2,
        "# Learned per-channel mix m = sigmoid(mix_logit): o = m * o_1 + (1 - m) * o_2,",
        "# starting at 50/50.",
        "self.mix_logit = nn.Parameter(torch.zeros(self.num_heads, self.head_v_dim))",
    )


def _render_output_init(src: _Source, spec: ArchitectureSpec) -> None:
    """The end of `__init__`: the output gate, the output norm and the output projection."""
    if spec.output_gate != "none":
        src.add(
            2,
            f"# Output gate ({spec.output_gate}): a data-dependent, per-channel filter on the mixer output.",
            "self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)",
        )
    if spec.output_norm == "rmsnorm":
        if spec.output_gate == "swish":
            src.add(2, "# RMSNorm per head fused with the swish output gate.")
            src.add(2, "self.o_norm = FusedRMSNormGated(self.head_v_dim)")
        else:
            src.add(2, "# RMSNorm per head: keeps the mixer output on a fixed scale.")
            src.add(2, "self.o_norm = RMSNorm(self.head_v_dim)")
    src.add(2, "self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)", "")


def _render_inputs_forward(src: _Source, spec: ArchitectureSpec) -> None:
    """The start of `forward`: q, k and v projected, convolved, and split into heads."""
    src.add(
        1,
        "def forward(self, hidden_states: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:",
        "    q = self.q_proj(hidden_states)",
        "    k = self.k_proj(hidden_states)",
        "    v = self.v_proj(hidden_states)",
    )
    if len(spec.conv_sizes) == 1:
        src.add(2, "q, _ = self.q_conv(q)", "k, _ = self.k_conv(k)", "v, _ = self.v_conv(v)")
    elif spec.conv_sizes:
        src.add(
            2,
            "q = sum(conv(q)[0] for conv in self.q_convs)",
            "k = sum(conv(k)[0] for conv in self.k_convs)",
            "v = sum(conv(v)[0] for conv in self.v_convs)",
        )
    src.add(
        2,
        'q = rearrange(q, "b t (h d) -> b t h d", h=self.num_heads)',
        'k = rearrange(k, "b t (h d) -> b t h d", h=self.num_heads)',
        'v = rearrange(v, "b t (h d) -> b t h d", h=self.num_heads)',
    )


def _render_mixers_forward(src: _Source, spec: ArchitectureSpec) -> None:
    """The mixer's output `o`, or both mixers' outputs mixed into `o` in a hybrid."""
    if spec.secondary is None:
        _render_mixer_forward(src, spec.mixer, 1, "Mixer", hybrid=False)
        return
    o1 = _render_mixer_forward(src, spec.mixer, 1, "Hybrid, mixer 1", hybrid=True)
    o2 = _render_mixer_forward(src, spec.secondary, 2, "Hybrid, mixer 2", hybrid=True)
    src.add(2, "m = self.mix_logit.sigmoid()", f"o = m * {o1} + (1 - m) * {o2}")


def _render_output_forward(src: _Source, spec: ArchitectureSpec) -> None:
    """The end of `forward`: gate and norm `o`, merge the heads, project back to hidden_size."""
    if spec.output_gate != "none":
        src.add(2, 'gate = rearrange(self.g_proj(hidden_states), "b t (h d) -> b t h d", h=self.num_heads)')
    if spec.output_norm == "rmsnorm" and spec.output_gate == "swish":
        src.add(2, "o = self.o_norm(o, gate)")
    elif spec.output_norm == "rmsnorm":
        src.add(2, "o = self.o_norm(o)")
        if spec.output_gate == "sigmoid":
            src.add(2, "o = o * gate.sigmoid()")
    elif spec.output_gate == "swish":
        src.add(2, "o = o * F.silu(gate)")
    elif spec.output_gate == "sigmoid":
        src.add(2, "o = o * gate.sigmoid()")
    src.add(2, 'o = rearrange(o, "b t h d -> b t (h d)")', "return self.o_proj(o), None")


def render(spec: ArchitectureSpec, class_name: str = DEFAULT_CLASS_NAME) -> str:
    """Python source of a complete module defining `class_name` for `spec`."""
    src = _Source()
    _render_header(src, spec, class_name)
    _render_projections_init(src, spec)
    _render_conv_init(src, spec)
    _render_mixers_init(src, spec)
    _render_output_init(src, spec)
    _render_inputs_forward(src, spec)
    _render_mixers_forward(src, spec)
    _render_output_forward(src, spec)
    return src.text()
