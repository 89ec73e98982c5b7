"""The package layout (#21): one folder per layer of the system, one concept
per module, no alias modules, and an import graph (imports inside functions
counted) that is acyclic, layered and free of private cross-module names.

Layers, lowest first; a module may import its own layer and lower ones::

    errors, config, device, version
    layers/            the paper's layers
    latent_codecs/     entropy coding of the latents
    models/            DCAEModel
    zoo/, format/      checkpoints and models by name; the .dcae file
    codec, rate_control
    training/, eval/
    cli/
    dcae, dcae.__main__, dcae.eval_model   (the public API and entry points)
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

import dcae

PACKAGE = Path(dcae.__file__).parent

LAYERS: List[Tuple[str, ...]] = [
    ("dcae.errors", "dcae.config", "dcae.device", "dcae.version"),
    ("dcae.layers",),
    ("dcae.latent_codecs",),
    ("dcae.models",),
    ("dcae.zoo", "dcae.format"),
    ("dcae.codec", "dcae.rate_control"),
    ("dcae.training", "dcae.eval"),
    ("dcae.cli",),
]
#: the public API and the programs: above every layer
ENTRY_POINTS = {"dcae", "dcae.__main__", "dcae.eval_model"}
SUBPACKAGES = {"layers", "latent_codecs", "models", "zoo", "format", "training", "eval", "cli"}
#: the module paths removed in #21 (aliases of moved modules, and the modules
#: split or moved into the subpackages)
REMOVED = {
    "attention", "bitstream", "commands", "convert", "dictionary", "entropy_model",
    "evaluate", "fast", "images", "loading", "metrics", "model", "nn", "pretrained",
    "report", "slice_coders", "train",
}  # fmt: skip
#: modules of more than MAX_LINES lines, each holding one concept
ONE_CONCEPT = {
    "dcae.latent_codecs.entropy_model": "DCAEEntropyModel (Eq. (4)) and its checks",
    "dcae.format.container": "the .dcae container: Bitstream, pack, unpack",
}
MAX_LINES = 400


def _modules() -> Dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


class _Imports(ast.NodeVisitor):
    """Every import of one module, at any depth (functions, classes,
    ``try``), with the names it binds; imports only for type checkers
    (``if TYPE_CHECKING:``) are kept apart."""

    def __init__(self, module: str):
        self.module = module
        self.edges: List[Tuple[str, Optional[str], bool]] = []  # (target, name, typing only)
        self.bound: Dict[str, str] = {}  # local name -> dcae module it names
        self.typing = 0

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node):
            self.typing += 1
            self.generic_visit(node)
            self.typing -= 1
        else:
            self.generic_visit(node)

    def _base(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.module if _is_package(self.module) else self.module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "dcae":
                self.edges.append((alias.name, None, bool(self.typing)))
                if alias.asname:
                    self.bound[alias.asname] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base.split(".")[0] != "dcae":
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in MODULES:  # a module: ``from . import host``
                self.edges.append((sub, None, bool(self.typing)))
                self.bound[alias.asname or alias.name] = sub
            else:
                self.edges.append((base, alias.name, bool(self.typing)))


def _imports() -> Dict[str, _Imports]:
    out = {}
    for name, path in MODULES.items():
        visitor = _Imports(name)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        out[name] = visitor
    return out


IMPORTS = _imports()


def _layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return len(LAYERS)
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _graph() -> Dict[str, Set[str]]:
    """Module -> the dcae modules it imports when it runs (any depth)."""
    return {
        m: {t for t, _, typing in v.edges if not typing and t != m} for m, v in IMPORTS.items()
    }


# ------------------------------------------------------------------ the folders
def test_no_alias_or_removed_module_paths():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir()
    }
    assert not top & REMOVED, sorted(top & REMOVED)
    for name, path in MODULES.items():
        assert "sys.modules[" not in path.read_text(), f"{name} replaces a module (an alias)"


def test_every_module_belongs_to_a_layer_and_its_package_lists_it():
    for name in MODULES:
        _layer(name)
    for package in SUBPACKAGES:
        doc = ast.get_docstring(ast.parse(MODULES[f"dcae.{package}"].read_text())) or ""
        members = [m for m in MODULES if m.startswith(f"dcae.{package}.")]
        assert members, package
        missing = [m for m in members if m not in doc]
        assert not missing, f"dcae/{package}/__init__.py does not describe {missing}"


def test_package_inits_hold_no_code():
    """Subpackages are folders with a map in their docstring: importing one
    imports nothing (the light command line imports ``dcae.cli``'s only)."""
    for package in SUBPACKAGES - {"cli"}:
        tree = ast.parse(MODULES[f"dcae.{package}"].read_text())
        body = [n for n in tree.body if not isinstance(n, ast.Expr)]
        assert not body, f"dcae/{package}/__init__.py holds code"


def test_modules_over_the_size_bound_hold_one_concept():
    long = {
        name: sum(1 for _ in path.open())
        for name, path in MODULES.items()
        if sum(1 for _ in path.open()) > MAX_LINES
    }
    assert set(long) <= set(ONE_CONCEPT), (
        f"modules over {MAX_LINES} lines: {long}; split them by concept (or name their "
        "one concept in ONE_CONCEPT)"
    )


# ------------------------------------------------------------------ the import graph
def test_import_graph_is_acyclic():
    graph = _graph()
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if t not in MODULES:
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_name_existing_modules():
    for m, v in IMPORTS.items():
        for target, _, _ in v.edges:
            assert target in MODULES, f"{m} imports {target}, which does not exist"


def test_no_lower_layer_imports_a_higher_one():
    bad = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, v in IMPORTS.items()
        for t, _, _ in v.edges
        if t in MODULES and _layer(t) > _layer(m)
    ]
    assert not bad, "\n".join(bad)


def test_no_module_uses_another_modules_private_names():
    bad = []
    for m, v in IMPORTS.items():
        for target, name, _ in v.edges:
            if name and name.startswith("_") and not name.startswith("__") and target != m:
                bad.append(f"{m}: from {target} import {name}")
        tree = ast.parse(MODULES[m].read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in v.bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{m}: {v.bound[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_the_test_sees_function_level_imports():
    """The graph counts imports inside functions (codec's find_quality used to
    reach the shipped model's private manifest reader from one)."""
    edges = {t for t, _, _ in IMPORTS["dcae.format.padding"].edges}
    assert "dcae.models.dcae" in edges  # imported inside coding_padding


# ------------------------------------------------------------------ the public API
def test_public_api_unchanged():
    from dcae.latent_codecs.entropy_model import DCAEEntropyModel
    from dcae.models.dcae import DCAEModel

    assert dcae.DCAEModel is DCAEModel and dcae.DCAEEntropyModel is DCAEEntropyModel
    assert all(hasattr(dcae, name) for name in dcae.__all__)


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_import_dcae_changes_no_global():
    """``import dcae`` registers DCAE with CompressAI and changes nothing else
    of the process: warnings filters, ``sys.path``, the default attention
    backend (torch and CompressAI are imported first: their own imports
    install filters of theirs)."""
    code = (
        "import sys, warnings\n"
        "import torch, compressai, compressai.zoo, compressai.models, compressai.latent_codecs\n"
        "import compressai.entropy_models, compressai.layers, compressai.ans, einops, numpy, PIL\n"
        "filters, path = list(warnings.filters), list(sys.path)\n"
        "import dcae, dcae.codec, dcae.training.loop, dcae.eval.evaluate, dcae.cli.eval\n"
        "print('FILTERS', warnings.filters == filters, 'PATH', sys.path == path)\n"
        "print('BACKEND', dcae.get_attention_backend())\n"
    )
    result = _fresh_python(code)
    assert "FILTERS True PATH True" in result.stdout, result.stdout + result.stderr
    expected = os.environ.get("DCAE_ATTENTION_BACKEND", "").strip().lower() or "auto"
    assert f"BACKEND {expected}" in result.stdout


@pytest.mark.parametrize("entry", ["dcae.eval_model"])
def test_documented_entry_points_run(entry):
    result = subprocess.run(
        [sys.executable, "-m", entry, "--help"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0 and "checkpoint" in result.stdout, result.stderr


def test_entry_point_modules_run_only_as_programs():
    """``dcae/eval_model.py`` is a program (``python -m dcae.eval_model``):
    importing it runs and re-exports nothing."""
    tree = ast.parse(MODULES["dcae.eval_model"].read_text())
    body = [n for n in tree.body if not isinstance(n, ast.Expr)]
    assert len(body) == 1 and isinstance(body[0], ast.If)
    assert "__main__" in ast.unparse(body[0].test)


def test_docs_and_code_speak_of_the_product():
    """No path of the development machines (``shared/``) in what a user reads:
    commands take the user's folders (Kodak, anchors, photos)."""
    repo = Path(__file__).resolve().parents[1]
    texts = [repo / "README.md", *repo.glob("docs/**/*.rst"), *repo.glob("docs/_static/*.md")]
    texts += [*repo.glob("dcae/**/*.py"), *repo.glob("benchmarks/**/*.py")]
    bad = [str(p.relative_to(repo)) for p in texts if "shared/" in p.read_text()]
    assert not bad, bad


def test_tests_mirror_the_package():
    """``tests/<folder>/`` for a subpackage's tests (``tests/golden``: the
    golden files); test file names unique (rootdir-relative imports)."""
    tests = Path(__file__).resolve().parent
    folders = {d.name for d in tests.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))}
    assert folders - {"golden"} <= SUBPACKAGES, folders
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names))
