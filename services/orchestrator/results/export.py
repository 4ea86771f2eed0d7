"""`asiarch export`: one candidate as a standalone Python file that needs torch (and einops), not asiarch.

The file holds, in order: a header; a copy of asiarch's own pure-PyTorch kernels and backbone
(the files asiarch.kernels.standalone lists, served as a private package by its `load_copy`,
whose source is copied too); a block that binds the layer's kernel names to the real FLA when it
loads and to that copy otherwise; the layer's own code with its kernel imports taken out; the
backbone's `LanguageModel` (asiarch.kernels.models) as `BackboneLanguageModel`; and a `__main__`
block that runs a forward pass on random bytes. Nothing is re-implemented here: the kernels
package owns the ops and says which of its files a copy needs.

Only text is read here (no torch): the kernels are copied as source.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import re

from asiarch.common.contract import DEFAULT_CLASS_NAME
from asiarch.common.source import SourceError, parse_source
from asiarch.kernels import standalone
from asiarch.v1 import common_pb2

from .summary import layer_source, mean_mqar

# Public kernel name -> (the real FLA module that has it, the subpackage of asiarch.kernels defining it).
SUPPORTED = standalone.OFFERS
# Names that, imported from a kernel package, are themselves modules (`from fla.ops import delta_rule`).
SUBMODULES = frozenset(
    {"kernels", "ops", "modules", "linear_attn", "simple_gla", "delta_rule", "gated_delta_rule"}
)
ENV_VAR = "STANDALONE_KERNELS"
DEFAULT_DIMS = {"d_model": 64, "n_layers": 2, "n_heads": 4}
RULE = "# " + "-" * 40


class ExportError(Exception):
    """The candidate cannot be made standalone (it needs something with no fallback)."""


def _is_kernel_module(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in ("asiarch.kernels", "fla"))


class _Imports:
    """The kernel imports of a layer: names to bind, module-style namespaces, statements to replace."""

    def __init__(self, tree: ast.Module) -> None:
        self.bindings: dict[str, str] = {}  # local name -> public kernel name
        self.modules: set[str] = set()  # local names bound to a kernel module object
        # start line -> (end line, code kept, indent, the statement as one line)
        self.replace: dict[int, tuple[int, str, int, str]] = {}
        self.unsupported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                self._from(node)
            elif isinstance(node, ast.Import):
                self._import(node)
        self.namespaces: dict[str, dict] = {}
        if self.modules:
            self._resolve_attributes(tree)

    def _from(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if not (_is_kernel_module(module) or module == "asiarch"):
            return
        for alias in node.names:
            local = alias.asname or alias.name
            if alias.name in SUPPORTED and module != "asiarch":
                self.bindings[local] = alias.name
            elif alias.name in SUBMODULES:
                self.modules.add(local)
            else:
                self.unsupported.append(f"{module}.{alias.name}")
        self.replace[node.lineno] = (node.end_lineno or node.lineno, "", node.col_offset, ast.unparse(node))

    def _import(self, node: ast.Import) -> None:
        kernel = [a for a in node.names if _is_kernel_module(a.name)]
        if not kernel:
            return
        for alias in kernel:
            self.modules.add(alias.asname or alias.name.split(".")[0])
        kept = [a for a in node.names if a not in kernel]
        code = ast.unparse(ast.Import(names=kept)) if kept else ""
        self.replace[node.lineno] = (node.end_lineno or node.lineno, code, node.col_offset, ast.unparse(node))

    def _resolve_attributes(self, tree: ast.Module) -> None:
        """`K.chunk_delta_rule`, `asiarch.kernels.l2norm`, ...: build nested namespaces of the names used."""
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Name) and node.id in self.modules and isinstance(node.ctx, ast.Load)
            ):
                continue
            chain: list[str] = []
            current: ast.AST = node
            while isinstance(parent := parents.get(current), ast.Attribute) and parent.value is current:
                chain.append(parent.attr)
                current = parent
            public = next((i for i, attr in enumerate(chain) if attr in SUPPORTED), None)
            if public is None:
                self.unsupported.append(".".join([node.id, *chain]))
                continue
            space = self.namespaces.setdefault(node.id, {})
            for attr in chain[:public]:
                space = space.setdefault(attr, {})
            space[chain[public]] = f"_kernel_{chain[public]}"
            self.bindings[f"_kernel_{chain[public]}"] = chain[public]


def _rewrite(source: str, replace: dict[int, tuple[int, str, int, str]], note: str) -> str:
    """Replace the given statements (line spans): nested ones by `pass`, so their block stays valid."""
    # The parser's notion of a line: str.splitlines would also split at \f, \x1c, \u2028 inside strings.
    lines = re.split(r"\r\n|\r|\n", source)
    out: list[str] = []
    index = 0
    while index < len(lines):
        number = index + 1
        if number not in replace:
            out.append(lines[index])
            index += 1
            continue
        end, kept, indent, statement = replace[number]
        pad = " " * indent
        if kept:
            out.append(pad + kept)
        if note:
            out.append(f"{pad}{'' if kept or indent == 0 else 'pass  '}# {statement}  [{note}]")
        elif not kept and indent:
            out.append(pad + "pass")
        index = end
    return "\n".join(out) + "\n"


def _without_future_imports(source: str) -> str:
    tree = ast.parse(source)
    spans = {
        n.lineno: (n.end_lineno or n.lineno, "", 0, "")
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module == "__future__"
    }
    return _rewrite(source, spans, "")


def _namespace_expression(space: dict) -> str:
    parts = [f"{k}={v if isinstance(v, str) else _namespace_expression(v)}" for k, v in space.items()]
    return f"_types.SimpleNamespace({', '.join(parts)})"


def _literal(text: str) -> str:
    """`text` as a readable raw triple-quoted literal when that reads back exactly, else its repr."""
    literal = f"r'''{text}'''"
    try:
        exact = ast.literal_eval(literal) == text
    except SyntaxError:
        exact = False
    return literal if exact else repr(text)


def _copy_block(package: str, files: dict[str, str]) -> str:
    """The kernels' files as `_KERNEL_FILES`, then `load_copy` (its source) importing them as `package`."""
    entries = "".join(f"    {path!r}: {_literal(source)},\n" for path, source in files.items())
    return "\n".join(
        [
            f"{RULE} asiarch's pure-PyTorch kernels and backbone (a copy)",
            "# The files of asiarch.kernels that asiarch.kernels.standalone lists for this layer, imported",
            f"# below as the package {package}: a private name, so nothing here needs asiarch.",
            f"_KERNEL_FILES = {{\n{entries}}}\n\n",
            inspect.getsource(standalone.load_copy).strip() + "\n\n",
            f"load_copy({package!r}, _KERNEL_FILES)\n",
        ]
    )


def _from_imports(imports: _Imports, module_of: dict[str, str]) -> list[str]:
    """`from MODULE import NAME [as LOCAL]` for every kernel name the layer binds, grouped by module."""
    by_module: dict[str, list[str]] = {}
    for local, public in sorted(imports.bindings.items()):
        by_module.setdefault(module_of[public], []).append(
            public if local == public else f"{public} as {local}"
        )
    return [f"from {module} import {', '.join(names)}" for module, names in sorted(by_module.items())]


def _binding_block(imports: _Imports, package: str) -> str:
    fla = {public: module for public, (module, _) in SUPPORTED.items()}
    copy = {public: f"{package}.{subpackage}" for public, (_, subpackage) in SUPPORTED.items()}
    lines = [
        "# The layer's kernels: the real flash-linear-attention (FLA) where it loads and a GPU runs, else",
        "# asiarch's pure-PyTorch kernels copied above (the same code asiarch runs on a CPU).",
        f"# {ENV_VAR}=fallback forces the copy.",
        "try:",
        f'    if os.environ.get("{ENV_VAR}") == "fallback":',
        f'        raise ImportError("{ENV_VAR}=fallback")',
        "    import fla",
        "",
        "    # FLA imports on a CPU, but its Triton kernels cannot run there (asiarch's `fla` shim can).",
        '    if not torch.cuda.is_available() and not getattr(fla, "RUNS_ON_CPU", False):',
        '        raise ImportError("no CUDA device for FLA\'s Triton kernels")',
        *(f"    {line}" for line in _from_imports(imports, fla)),
        '    STANDALONE_KERNELS_USED = "flash-linear-attention (fla)"',
        "except Exception as error:  # not installed, or unusable here (no triton, no GPU)",
        *(f"    {line}" for line in _from_imports(imports, copy)),
        '    STANDALONE_KERNELS_USED = f"pure-PyTorch fallbacks ({type(error).__name__}: {error})"',
    ]
    lines += [
        f"{name} = {_namespace_expression(space)}" for name, space in sorted(imports.namespaces.items())
    ]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    # NUL and other control characters would make the file unparseable or unreadable
    clean = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", text)
    return "\n".join(f"#   {line}".rstrip() for line in clean.splitlines()) or "#   (none)"


def _header(experiment: common_pb2.Experiment, class_name: str) -> str:
    f, metrics = experiment.fitness, experiment.evaluation.metrics
    val_loss = f"{metrics.val_loss:.4f}" if metrics.HasField("val_loss") else "n/a"
    mqar = mean_mqar(experiment)
    return "\n".join(
        [
            f"# {experiment.name}: a token-mixing layer found by asiarch, exported as a standalone file.",
            "#",
            f"# experiment: {experiment.id}   run: {experiment.run_id}   cycle: {experiment.cycle}",
            f"# fitness: {f.total:.3f} (loss {f.loss_score:.3f}, benchmark {f.benchmark_score:.3f}, "
            f"judge {f.judge_score:.3f})",
            f"# val_loss: {val_loss}   mean MQAR accuracy: {'n/a' if mqar is None else f'{mqar:.3f}'}",
            f"# layer class: {class_name}",
            "#",
            "# Motivation:",
            _comment(experiment.proposal.motivation),
            "#",
            "# Needs torch (and einops when the layer uses it); not asiarch. Run `python <this file>`:",
            "# it builds the backbone with this layer and runs a forward pass on random bytes.",
        ]
    )


def _main_block(experiment: common_pb2.Experiment, class_name: str) -> str:
    budget = experiment.evaluation.budget
    dims = {k: getattr(budget, k) if budget.HasField(k) else v for k, v in DEFAULT_DIMS.items()}
    return f"""if __name__ == "__main__":
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # The evaluated width, depth and heads; 256 byte values as the vocabulary.
    model = BackboneLanguageModel({class_name}, vocab=256, dim={dims["d_model"]}, \
layers={dims["n_layers"]}, heads={dims["n_heads"]}).to(device)
    tokens = torch.randint(0, 256, (2, 64), device=device)
    with torch.no_grad():
        logits = model(tokens)
    print(f"kernels: {{STANDALONE_KERNELS_USED}}")
    print(f"layer parameters: {{model.layer_parameters():,}}")
    print(f"output shape: {{tuple(logits.shape)}}")
"""


def _layer_imports(module_source: str) -> _Imports:
    """The layer's kernel imports; ExportError when it does not parse or uses a kernel with no copy."""
    try:
        imports = _Imports(parse_source(module_source))
    except SourceError as exc:
        raise ExportError(f"the layer's source does not parse: {exc.reason}") from None
    if imports.unsupported:
        raise ExportError(
            "no standalone fallback for "
            + ", ".join(sorted(set(imports.unsupported)))
            + "; supported: "
            + ", ".join(sorted(SUPPORTED))
        )
    return imports


def standalone_source(experiment: common_pb2.Experiment) -> str:
    """The standalone file for an experiment; ExportError when a kernel it uses has no standalone copy."""
    source = layer_source(experiment)
    class_name = source.class_name or DEFAULT_CLASS_NAME
    imports = _layer_imports(source.module_source)
    files = standalone.files({standalone.BACKBONE, *(SUPPORTED[p][1] for p in imports.bindings.values())})
    # Named after its content: two exported files loaded in one process share a copy only if it is the same.
    package = "_asiarch_kernels_" + hashlib.sha256(json.dumps(files).encode()).hexdigest()[:12]
    layer = _rewrite(source.module_source, imports.replace, "bound above: FLA or asiarch's copy")
    parts = [
        _header(experiment, class_name),
        "from __future__ import annotations\n\nimport os\n"
        + ("import types as _types\n" * bool(imports.modules))
        + "\nimport torch\n",
        _copy_block(package, files),
    ]
    if imports.bindings:
        parts.append(_binding_block(imports, package))
    else:
        parts.append('STANDALONE_KERNELS_USED = "none (the layer imports no kernels)"\n')
    parts += [f"{RULE} the layer (experiment {experiment.id})\n", _without_future_imports(layer).strip()]
    parts += [
        f"{RULE} the backbone (asiarch.kernels.models)\n",
        f"from {package}.{standalone.BACKBONE} import LanguageModel as BackboneLanguageModel\n",
        _main_block(experiment, class_name),
    ]
    return "\n\n".join(part.rstrip("\n") + "\n" for part in parts)
