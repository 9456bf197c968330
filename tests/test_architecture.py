"""The import rule of docs/architecture.md, checked on the source of every ``sod2/**/*.py``.

Layers, lowest first (a module may import its own package and any lower layer; the packages of
one layer do not import each other, except in the application layer):

====  ===========================================  ==============================================
rank  packages                                     may import (sod2)
====  ===========================================  ==============================================
0     ``sod2.errors``                              nothing
1     ``sod2.config``                              errors
2     ``sod2.data``, ``sod2.layers``,              errors, config
      ``sod2.solver``
3     ``sod2.modeling`` (baselines)                the above
4     ``sod2.modeling.methods.<m>``                the above, never another method
5     ``sod2.engine``, ``sod2.inference``,         the above and each other
      ``sod2.evaluation``, ``sod2.export``,
      ``sod2.utils``
6     ``sod2`` (its ``__init__``: registration)    everything
====  ===========================================  ==============================================

No sod2 module imports ``tools`` or ``configs`` (they sit above the library).

Every import counts: module level and inside functions, ``import a.b``, ``from a import b``
(``b`` is taken as the module ``a.b`` when that file exists), relative imports resolved against
the importing file, and ``importlib.import_module("sod2...")`` / ``__import__("sod2...")`` with a
constant name.

The method rule (rank 4) covers the four packages of ``sod2/modeling/methods/``;
``test_checker_reports_*`` prove on small trees that it fails when broken. A known violation
would go into ``ALLOWED`` as an (importer, imported) pair with its reason; there is none.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

APPLICATION = ("engine", "inference", "evaluation", "export", "utils")
RANKS = {"errors": 0, "config": 1, "data": 2, "layers": 2, "solver": 2, "modeling": 3,
         **{name: 5 for name in APPLICATION}}
METHODS = "sod2.modeling.methods"

# (importer module, imported module) -> why the rule does not apply. Empty: today's code obeys it.
ALLOWED: dict[tuple[str, str], str] = {
}


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of ``path`` (a .py file under ``root``, the folder that holds ``sod2/``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module that the file ``path`` imports (all of them, not only sod2's)."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")
                if node.level - 1 >= len(up):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top package")
                base = ".".join(up[:len(up) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if alias.name != "*" and _is_module(sub, root) else base)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.add(node.args[0].value)
    return found


def _method(name: str) -> str | None:
    """``cfinet`` for ``sod2.modeling.methods.cfinet[...]``, ``""`` for the package itself, else None."""
    if name == METHODS:
        return ""
    if name.startswith(METHODS + "."):
        return name[len(METHODS) + 1:].split(".")[0]
    return None


def _layer(name: str) -> tuple[int, str] | None:
    """(rank, package) of a sod2 module; None outside sod2."""
    parts = name.split(".")
    if parts[0] != "sod2":
        return None
    if len(parts) == 1:
        return 6, "sod2"
    if _method(name) is not None:
        return 4, METHODS
    if parts[1] not in RANKS:
        raise AssertionError(f"{name}: sod2.{parts[1]} has no layer; add it to docs/architecture.md and RANKS")
    return RANKS[parts[1]], "sod2." + parts[1]


def rule_broken(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``; None when it may."""
    top = imported.split(".")[0]
    if top in ("tools", "configs"):
        return "sod2 never imports tools/ or configs/"
    mine, theirs = _layer(importer), _layer(imported)
    if theirs is None or mine[1] == theirs[1] and mine[0] != 4:
        return None
    if mine[0] == 4:
        a, b = _method(importer), _method(imported)
        if b is not None:
            if a == b or a == "":  # a method's own files; methods/__init__ registers every method
                return None
            return "methods never import each other"
    if theirs[0] < mine[0] or (theirs[0] == mine[0] == 5):
        return None
    if theirs[0] == mine[0]:
        return f"{mine[1]} and {theirs[1]} are one layer and independent of each other"
    return f"{mine[1]} (layer {mine[0]}) imports {theirs[1]} (layer {theirs[0]}) above it"


def violations(root: Path, allowed=None) -> list[str]:
    """``importer -> imported: reason`` for every import under ``root/sod2`` that breaks the rule."""
    allowed = ALLOWED if allowed is None else allowed
    out = []
    for path in sorted((root / "sod2").rglob("*.py")):
        importer = module_name(path, root)
        for imported in sorted(imports_of(path, root)):
            why = rule_broken(importer, imported)
            if why and (importer, imported) not in allowed:
                out.append(f"{path.relative_to(root)}: {importer} -> {imported}: {why}")
    return out


# ---------------------------------------------------------------------------------------------
# the checker itself, on small hand-made trees


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"sod2/__init__.py": "", "sod2/errors.py": "", "sod2/modeling/__init__.py": "",
                      "sod2/layers/__init__.py": "", "sod2/data/__init__.py": "",
                      "sod2/engine/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_imports_resolved(tmp_path):
    root = _tree(tmp_path, {
        "sod2/modeling/heads/__init__.py": "from . import probe\nfrom .probe import Probe\n",
        "sod2/modeling/heads/probe.py": (
            "import torch, os.path\nfrom ..backbone import *\nfrom ... import errors\n"
            "from ...layers.mlp import MLP\nfrom sod2 import data\n"
            "def f():\n    from sod2.engine.hooks import H\n    import importlib\n"
            "    importlib.import_module('sod2.export')\n    return __import__('sod2.utils')\n"),
        "sod2/modeling/backbone/__init__.py": "",
        "sod2/layers/mlp.py": "",
    })
    assert imports_of(root / "sod2/modeling/heads/probe.py", root) == {
        "torch", "os.path", "sod2.modeling.backbone", "sod2.errors", "sod2.layers.mlp", "sod2.data",
        "sod2.engine.hooks", "importlib", "sod2.export", "sod2.utils"}
    assert imports_of(root / "sod2/modeling/heads/__init__.py", root) == {"sod2.modeling.heads.probe"}


def test_checker_reports_upward_and_sibling_imports(tmp_path):
    root = _tree(tmp_path, {
        "sod2/errors.py": "from sod2.config import x\n",
        "sod2/config/__init__.py": "from ..errors import UserError\n",
        "sod2/data/io.py": "def f():\n    from ..modeling import meta_arch\n",  # function-level
        "sod2/layers/ops.py": "from sod2.data import io\n",
        "sod2/modeling/meta_arch.py": "from ..engine import hooks\nfrom sod2.layers import ops\n",
        "sod2/engine/hooks.py": "from sod2.modeling import meta_arch\nimport sod2.inference\nimport tools.x\n",
        "sod2/inference/__init__.py": "from ..engine import hooks\n",
    })
    assert violations(root, allowed={}) == [
        "sod2/data/io.py: sod2.data.io -> sod2.modeling.meta_arch: sod2.data (layer 2) imports "
        "sod2.modeling (layer 3) above it",
        "sod2/engine/hooks.py: sod2.engine.hooks -> tools.x: sod2 never imports tools/ or configs/",
        "sod2/errors.py: sod2.errors -> sod2.config: sod2.errors (layer 0) imports sod2.config (layer 1) above it",
        "sod2/layers/ops.py: sod2.layers.ops -> sod2.data.io: sod2.layers and sod2.data are one layer and "
        "independent of each other",
        "sod2/modeling/meta_arch.py: sod2.modeling.meta_arch -> sod2.engine.hooks: sod2.modeling (layer 3) "
        "imports sod2.engine (layer 5) above it",
    ]
    pair = ("sod2.data.io", "sod2.modeling.meta_arch")
    assert len(violations(root, allowed={pair: "reason"})) == 4


def test_checker_reports_method_rules(tmp_path):
    root = _tree(tmp_path, {
        "sod2/__init__.py": "from .modeling import methods\n",
        "sod2/modeling/methods/__init__.py": "from . import alpha, beta\n",
        "sod2/modeling/methods/alpha/__init__.py": "from .parts import A\nfrom ...heads import head\n",
        "sod2/modeling/methods/alpha/parts.py": "from sod2.layers import mlp\nfrom ..beta import B\n",
        "sod2/modeling/methods/beta/__init__.py": "def f():\n    from .. import alpha\n    from ... import methods\n",
        "sod2/modeling/heads/head.py": "from sod2.modeling.methods.alpha import A\n",
        "sod2/modeling/heads/__init__.py": "",
        "sod2/layers/mlp.py": "",
        "sod2/engine/train.py": "from sod2.modeling.methods import beta\n",
    })
    assert violations(root, allowed={}) == [
        "sod2/modeling/heads/head.py: sod2.modeling.heads.head -> sod2.modeling.methods.alpha: "
        "sod2.modeling (layer 3) imports sod2.modeling.methods (layer 4) above it",
        "sod2/modeling/methods/alpha/parts.py: sod2.modeling.methods.alpha.parts -> sod2.modeling.methods.beta: "
        "methods never import each other",
        "sod2/modeling/methods/beta/__init__.py: sod2.modeling.methods.beta -> sod2.modeling.methods: "
        "methods never import each other",
        "sod2/modeling/methods/beta/__init__.py: sod2.modeling.methods.beta -> sod2.modeling.methods.alpha: "
        "methods never import each other",
    ]


def test_unknown_package_needs_a_layer(tmp_path):
    root = _tree(tmp_path, {"sod2/newpkg/__init__.py": "from sod2 import errors\n"})
    with pytest.raises(AssertionError, match="sod2.newpkg has no layer"):
        violations(root, allowed={})


# ---------------------------------------------------------------------------------------------
# sod2 itself


def test_sod2_obeys_the_import_rule():
    modules = list((REPO / "sod2").rglob("*.py"))
    assert len(modules) > 80  # the walk found the package
    # the walk sees real edges (guards against a resolver that finds nothing)
    assert "sod2.layers.ms_deform_attn" in imports_of(REPO / "sod2/modeling/transformer/rtdetr_decoder.py", REPO)
    assert "sod2.errors" in imports_of(REPO / "sod2/data/io.py", REPO)
    bad = violations(REPO)
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)
    stale = [pair for pair in ALLOWED
             if not any(module_name(p, REPO) == pair[0] and pair[1] in imports_of(p, REPO)
                        for p in modules)]
    assert not stale, f"ALLOWED entries no longer needed: {stale}"


def test_methods_registered_from_the_top_package():
    """sod2/modeling/__init__.py never imports the method packages (sod2/__init__.py does), so
    the rule 'baselines never import methods' has no exception; the four method packages exist
    and each imports baselines (the rule is not vacuous)."""
    init = REPO / "sod2/modeling/__init__.py"
    assert not any(_method(m) is not None for m in imports_of(init, REPO))
    assert "sod2.modeling.methods" in imports_of(REPO / "sod2/__init__.py", REPO)
    packages = sorted(p.name for p in (REPO / "sod2/modeling/methods").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["better_sampling", "cfinet", "fgprobe", "srtod"]
    for name in packages:
        edges = set().union(*(imports_of(f, REPO) for f in (REPO / "sod2/modeling/methods" / name).rglob("*.py")))
        assert any(e.startswith("sod2.modeling.") and _method(e) is None for e in edges), name
