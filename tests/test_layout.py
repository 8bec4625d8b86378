"""One module owns the run-directory layout, and the package's module-level imports form no circle."""

from __future__ import annotations

import ast
from pathlib import Path

from curriculum.layout import STAGES, RunLayout, completions_path, rejects_path_for, samples_path_for

PACKAGE = Path(__file__).resolve().parents[1] / "curriculum"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """curriculum module -> the curriculum modules it imports at module level (not inside functions)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.parse(path.read_text()).body:  # the module body only: function-level imports are lazy
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                # `from pkg import module` imports the module; `from pkg import thing` imports pkg/__init__
                targets = submodules if all(m in modules for m in submodules) else [base, *submodules]
            else:
                continue
            # a submodule importing its own package (__init__) is how packages work, not a circle
            edges.update(target for target in targets if target in modules and target != name
                         and not name.startswith(target + "."))
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_in_the_package():
    graph = module_imports()
    assert "curriculum.layout" in graph and graph["curriculum.reports"] >= {"curriculum.layout"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_layout_names_every_file_once_and_the_helpers_agree():
    layout = RunLayout("runs/x")
    assert layout.rejects == rejects_path_for(layout.problems) == Path("runs/x/problems.rejects.jsonl")
    assert layout.completions == completions_path(layout.scores) == Path("runs/x/scores.completions.parquet")
    assert layout.samples("before") == samples_path_for(layout.eval("before")) == Path("runs/x/eval_before.samples.jsonl")
    assert layout.heldout_manifest == Path("runs/x/heldout/manifest.json")
    assert layout.marker("train") == Path("runs/x/.pipeline/train.json")
    for stage in STAGES:
        assert layout.outputs(stage)
    # the old homes of these helpers hand out the same paths
    from curriculum.data.prepare import repairs_path_for
    from curriculum.evaluation import samples_path_for as eval_samples
    from curriculum.scoring import completions_path as scoring_completions

    assert repairs_path_for(layout.problems) == layout.repairs
    assert eval_samples(layout.eval("after")) == layout.samples("after")
    assert scoring_completions(layout.scores) == layout.completions
