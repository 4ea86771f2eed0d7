"""The `fla` shim: FLA import paths served by asiarch.kernels when ASIARCH_FLA_COMPAT is set.

Every check runs a fresh interpreter, because the hook acts at start-up (a .pth
file in site-packages) and only sees the environment the interpreter starts with.
The children run as CPU processes (CUDA_VISIBLE_DEVICES=""), whatever this
machine has, and a stand-in "real FLA" on PYTHONPATH plays an installed FLA, so
the outcome does not depend on whether flash-linear-attention is installed here.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from asiarch.kernels.fla_compat import ENV_VAR, SHIM_DIR, prefers_shim

PTH_NAME = "asiarch-fla-compat.pth"
PTH_SOURCE = Path(SHIM_DIR).parent / PTH_NAME

MODULE_NAMES = {
    "fla.ops.linear_attn": ["chunk_linear_attn", "fused_recurrent_linear_attn"],
    "fla.ops.simple_gla": ["chunk_simple_gla", "fused_recurrent_simple_gla"],
    "fla.ops.delta_rule": ["chunk_delta_rule", "fused_recurrent_delta_rule"],
    "fla.ops.gated_delta_rule": ["chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule"],
    "fla.modules": ["RMSNorm", "FusedRMSNormGated", "ShortConvolution"],
    "fla.modules.l2norm": ["l2norm", "l2_norm"],
    "fla.layers.utils": ["get_unpad_data", "index_first_axis", "pad_input"],
    "fla.models.utils": ["Cache"],
}


def run_python(
    code: str, compat: str | None = "1", pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "PYTHONPATH")}
    # A CPU process, as the engineer's sandbox is on a machine without a GPU.
    env["CUDA_VISIBLE_DEVICES"] = ""
    if compat is not None:
        env[ENV_VAR] = compat
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    # -P: the working directory (the repo root) must not shadow Hugging Face's
    # `kernels` package, which a real FLA imports through transformers.
    return subprocess.run(
        [sys.executable, "-P", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_output(code: str, **kwargs: object) -> str:
    proc = run_python(code, **kwargs)  # type: ignore[arg-type]
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture
def real_fla(tmp_path: Path) -> Path:
    """A folder holding a stand-in for an installed flash-linear-attention."""
    (tmp_path / "fla").mkdir()
    (tmp_path / "fla" / "__init__.py").write_text("__version__ = 'real'\n")
    return tmp_path


@pytest.fixture(scope="module", autouse=True)
def _hook_installed() -> None:
    """The start-up hook must be in this interpreter's site-packages with the shipped content."""
    dirs = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    installed = [Path(d) / PTH_NAME for d in dirs if (Path(d) / PTH_NAME).is_file()]
    assert installed, (
        f"{PTH_NAME} is not installed in {sorted(dirs)}; reinstall the package (pip install -e .)"
    )
    assert installed[0].read_text() == PTH_SOURCE.read_text(), f"{installed[0]} is stale"


def test_pth_is_one_cheap_line() -> None:
    lines = PTH_SOURCE.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("import os;") and "torch" not in lines[0]


@pytest.mark.parametrize(
    ("mode", "real_fla", "cuda", "shim"),
    [
        ("1", False, False, True),
        ("1", False, True, True),
        ("1", True, False, True),  # FLA's Triton kernels cannot run without a GPU
        ("1", True, True, False),
        ("shim", True, True, True),
        ("shim", False, False, True),
    ],
)
def test_policy(mode: str, real_fla: bool, cuda: bool, shim: bool) -> None:
    assert prefers_shim(mode, real_fla, cuda) is shim


def test_every_fla_module_resolves_to_the_shim() -> None:
    # find_spec locates the modules without executing them, so this checks the mechanism alone.
    out = check_output(
        f"""
        import importlib.util, fla
        print(fla.__version__)
        for name in {sorted(MODULE_NAMES)!r}:
            print(importlib.util.find_spec(name).origin)
        """
    )
    version, *origins = out.splitlines()
    assert version.endswith("+asiarch")
    assert len(origins) == len(MODULE_NAMES)
    assert all(Path(origin).is_relative_to(SHIM_DIR) for origin in origins), origins


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(
            ["fla.modules", "fla.modules.l2norm", "fla.layers.utils", "fla.models.utils"], id="utils"
        ),
        pytest.param([m for m in MODULE_NAMES if m.startswith("fla.ops.")], id="ops"),
    ],
)
def test_fla_names_are_asiarch_objects(modules: list[str]) -> None:
    names = {m: MODULE_NAMES[m] for m in modules}
    out = check_output(
        f"""
        import importlib, inspect
        for module, names in {names!r}.items():
            mod = importlib.import_module(module)
            for name in names:
                obj = getattr(mod, name)
                home = importlib.import_module(obj.__module__)
                # The object is asiarch's own (same identity), defined under asiarch.kernels.
                assert obj.__module__.startswith("asiarch.kernels."), (module, name, obj.__module__)
                assert getattr(home, obj.__name__) is obj, (module, name)
                print(module, name, inspect.getsourcefile(obj))
        import asiarch.kernels.modules as m, fla.modules
        assert fla.modules.RMSNorm is m.RMSNorm
        """
    )
    assert len(out.splitlines()) == sum(len(v) for v in names.values())


@pytest.mark.parametrize("compat", [None, "0"])
def test_without_the_variable_the_shim_stays_out(compat: str | None, real_fla: Path) -> None:
    # Whatever is installed here: the shim is neither found nor even loaded.
    out = check_output(
        f"""
        import importlib.util, sys
        spec = importlib.util.find_spec("fla")
        print(spec is None or not spec.origin.startswith({SHIM_DIR!r}))
        print("asiarch.kernels.fla_compat" in sys.modules)
        """,
        compat=compat,
    )
    assert out.splitlines() == ["True", "False"]
    # And an installed FLA is imported as usual.
    out = check_output("import fla; print(fla.__version__)", compat=compat, pythonpath=real_fla)
    assert out == "real"


@pytest.mark.parametrize(
    ("compat", "cuda", "expected"),
    [
        pytest.param("1", False, "shim", id="1-cpu"),
        pytest.param("1", True, "real", id="1-gpu"),
        pytest.param("shim", True, "shim", id="shim-gpu"),
    ],
)
def test_which_fla_an_installed_fla_gives_way_to(
    compat: str, cuda: bool, expected: str, real_fla: Path
) -> None:
    # torch is asked only when `fla` is imported: patch its answer first, to play a GPU machine.
    code = f"""
        import torch
        torch.cuda.is_available = lambda: {cuda}
        import fla
        from asiarch.kernels.fla_compat import is_installed
        print("shim" if fla.__version__.endswith("+asiarch") else fla.__version__, is_installed())
        """
    assert check_output(code, compat=compat, pythonpath=real_fla) == f"{expected} True"
    # Made importable only after start-up (a sys.path entry added at run time): the
    # choice is made at `import fla`, not at start-up, so the outcome is the same.
    late = code.replace("import fla\n", f"import sys; sys.path.insert(0, {str(real_fla)!r}); import fla\n", 1)
    assert check_output(late, compat=compat) == f"{expected} True"


def test_an_unknown_value_is_reported_once_and_ignored() -> None:
    proc = run_python(
        "from asiarch.kernels.fla_compat import is_installed; print(is_installed())", compat="yes"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "False"
    assert proc.stderr.splitlines() == [f"asiarch: ignoring {ENV_VAR}='yes': expected 1, shim or 0"], (
        proc.stderr
    )


@pytest.mark.parametrize("compat", ["1", "shim"])
def test_startup_stays_cheap(compat: str) -> None:
    out = check_output(
        """
        import sys
        from asiarch.kernels.fla_compat import is_installed
        print("torch" in sys.modules, "fla" in sys.modules, is_installed())
        """,
        compat=compat,
    )
    assert out == "False False True"


LAYER_SCRIPT = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from fla.layers.utils import get_unpad_data, index_first_axis, pad_input
from fla.models.utils import Cache
from fla.modules import FusedRMSNormGated, ShortConvolution
from fla.modules.l2norm import l2norm
from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule


class TinyDeltaNet(nn.Module):
    # A DeltaNet / Gated DeltaNet layer in the style of fla.layers, using only fla imports.

    def __init__(self, hidden_size=32, num_heads=2, gated=False, layer_idx=0):
        super().__init__()
        self.gated, self.layer_idx, self.head_dim = gated, layer_idx, hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        if gated:
            self.a_proj = nn.Linear(hidden_size, num_heads, bias=False)
        self.g_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.q_conv1d = ShortConvolution(hidden_size, kernel_size=4, activation="silu")
        self.k_conv1d = ShortConvolution(hidden_size, kernel_size=4, activation="silu")
        self.v_conv1d = ShortConvolution(hidden_size, kernel_size=4, activation="silu")
        self.o_norm = FusedRMSNormGated(self.head_dim, eps=1e-5)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x, attention_mask=None, past_key_values=None, use_cache=False):
        batch_size, q_len, _ = x.shape
        last = None
        if past_key_values is not None and len(past_key_values) > self.layer_idx:
            last = past_key_values[self.layer_idx]
        cu_seqlens = None
        if attention_mask is not None:
            indices, cu_seqlens, _ = get_unpad_data(attention_mask[:, -q_len:])
            x = index_first_axis(rearrange(x, "b s ... -> (b s) ..."), indices).unsqueeze(0)
        conv_q, conv_k, conv_v = last["conv_state"] if last is not None else (None, None, None)
        conv_kw = dict(output_final_state=use_cache, cu_seqlens=cu_seqlens)
        q, conv_q = self.q_conv1d(self.q_proj(x), cache=conv_q, **conv_kw)
        k, conv_k = self.k_conv1d(self.k_proj(x), cache=conv_k, **conv_kw)
        v, conv_v = self.v_conv1d(self.v_proj(x), cache=conv_v, **conv_kw)
        q, k, v = (rearrange(t, "... (h d) -> ... h d", d=self.head_dim) for t in (q, k, v))
        beta = self.b_proj(x).sigmoid()
        state = last["recurrent_state"] if last is not None else None
        recurrent = q_len == 1
        common = dict(initial_state=state, output_final_state=use_cache, cu_seqlens=cu_seqlens)
        if self.gated:
            g = F.logsigmoid(self.a_proj(x))
            fn = fused_recurrent_gated_delta_rule if recurrent else chunk_gated_delta_rule
            o, state = fn(q=l2norm(q), k=l2norm(k), v=v, g=g, beta=beta, **common)
        else:
            fn = fused_recurrent_delta_rule if recurrent else chunk_delta_rule
            o, state = fn(q=q, k=k, v=v, beta=beta, use_qk_l2norm_in_kernel=True, **common)
        if past_key_values is not None:
            conv_state = (conv_q, conv_k, conv_v)
            past_key_values.update(
                recurrent_state=state, conv_state=conv_state, layer_idx=self.layer_idx, offset=q_len
            )
        o = self.o_norm(o, rearrange(self.g_proj(x), "... (h d) -> ... h d", d=self.head_dim))
        o = self.o_proj(rearrange(o, "b t h d -> b t (h d)"))
        if attention_mask is not None:
            o = pad_input(o.squeeze(0), indices, batch_size, q_len)
        return o


def rel(ref, out):
    return ((ref - out).norm() / ref.norm()).item()


torch.manual_seed(0)
for gated in (False, True):
    layer = TinyDeltaNet(gated=gated)
    x, target = torch.randn(2, 24, 32), torch.randn(2, 24, 32)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    loss = F.mse_loss(layer(x), target)
    loss.backward()
    assert torch.isfinite(loss), loss
    for n, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n
    opt.step()
    changed = [n for n, p in layer.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), sorted(set(before) - set(changed))

    with torch.no_grad():
        full = layer(x)
        # Prefill then token-by-token decoding through the Cache equals the full sequence.
        cache = Cache()
        outs = [layer(x[:, :10], past_key_values=cache, use_cache=True)]
        outs += [layer(x[:, t : t + 1], past_key_values=cache, use_cache=True) for t in range(10, 24)]
        assert cache.get_seq_length(0) == 24
        err = rel(full, torch.cat(outs, 1))
        assert err < 1e-4, ("decode", gated, err)
        # Left padding: real tokens give the unpadded outputs, padding gives zeros.
        mask = torch.ones(2, 24, dtype=torch.long)
        mask[1, :5] = 0
        padded = layer(x, attention_mask=mask)
        assert rel(full[:1], padded[:1]) < 1e-4 and rel(layer(x[1:, 5:]), padded[1:, 5:]) < 1e-4
        assert padded[1, :5].abs().max() == 0
    print(f"gated={gated} loss={loss.item():.4f} decode_err={err:.2e}")
print("OK")
"""


@pytest.mark.slow
def test_fla_style_layers_train_and_decode_on_cpu() -> None:
    """Layers like DeltaNet and Gated DeltaNet written against `fla.*` run on a CPU (compat `1`)."""
    out = check_output(LAYER_SCRIPT)
    assert out.splitlines()[-1] == "OK", out
