"""dvc.yaml's code deps cover every genpipe module a stage imports, transitively.

An edit to an imported module that is not a dep would leave the stage "up to date" with stale
outputs. The closure is read from the source (imports inside functions included), starting at
the module the stage's command runs; `train --task X` also imports genpipe.training.tasks.X.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """genpipe modules named by the imports in `path` (not those under `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("genpipe")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genpipe"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # submodules by name
    return {m for m in found if module_file(m) is not None}


def closure(start: list[str]) -> set[Path]:
    """Files of every genpipe module reachable from `start`, package __init__s included."""
    todo, seen = list(start), set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            name = ".".join(parts[:i])
            if name in seen or module_file(name) is None:
                continue
            seen.add(name)
            todo += sorted(_imports(module_file(name)))
    return {module_file(m) for m in seen}


def entry_modules(cmd: str) -> list[str]:
    argv = shlex.split(cmd)
    modules = [argv[argv.index("-m") + 1]]
    if "--task" in argv:
        modules.append(f"genpipe.training.tasks.{argv[argv.index('--task') + 1]}")
    return modules


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def _deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_imported_genpipe_module_is_a_dep(name: str) -> None:
    stage = STAGES[name]
    deps = _deps(stage)
    missing = sorted(
        str(p.relative_to(REPO))
        for p in closure(entry_modules(stage["cmd"]))
        if not covered(p, deps)
    )
    assert not missing, f"dvc.yaml stage {name!r} imports these but does not depend on them"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_code_dep_is_a_module_the_stage_does_not_import(name: str) -> None:
    """The other direction: a listed code dep the stage never imports reruns it for nothing."""
    stage = STAGES[name]
    imported = closure(entry_modules(stage["cmd"]))
    for dep in (d for d in _deps(stage) if d.startswith("src/")):
        path = REPO / dep
        files = [path] if path.is_file() else list(path.rglob("*.py"))
        assert set(files) & imported, f"{name}: {dep} is a dep but nothing in it is imported"


def test_the_closure_follows_lazy_imports(tmp_path: Path) -> None:
    files = closure(["genpipe.stages.evaluate"])
    rel = {str(p.relative_to(SRC)) for p in files}
    assert "genpipe/evaluation/evaluate.py" in rel  # imported inside a function
    assert "genpipe/models/restoration.py" in rel  # two levels down
    assert "genpipe/training/loop.py" not in rel  # evaluate never trains


def _reads(stage: dict, key: str) -> bool:
    """Whether a change of the dotted params key `key` reruns the stage."""
    params = [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
    return any(key == p or key.startswith(f"{p}.") for p in params)


def test_the_seed_spread_reruns_decide_and_nothing_upstream() -> None:
    """decide reads register.tie_rule and register.seed_spread from params, never a file DVC does
    not track; changing them must not retrain or re-evaluate (check_params reads every section
    a stage reads, and its output never changes)."""
    for key in ("register.tie_rule", "register.seed_spread.generation"):
        assert _reads(STAGES["decide"], key), key
        others = [
            n for n in STAGES if n not in ("decide", "check_params") and _reads(STAGES[n], key)
        ]
        assert others == [], key


def test_check_params_reads_every_section_a_stage_reads() -> None:
    """A typo in any section a stage reads reruns check_params first, which fails on it."""
    checked = set(STAGES["check_params"]["params"])
    for name, stage in STAGES.items():
        for key in stage.get("params", []):
            key = key if isinstance(key, str) else next(iter(key))
            assert key.split(".")[0] in checked, (name, key)
