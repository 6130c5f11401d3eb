"""The shape of the code, checked: data flows one way and so do imports.

bytes → smtp events → receive decisions (policy) → spool → deliver → next hop. Only the
composition root (``mailward.service``) and the commands above it import every role;
receive never imports deliver; policy and smtp import neither; no two packages import each
other and no module cycle exists. Read statically (every ``import`` in the source, including
those inside functions), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from mailward.spool.queue import Queue
from mailward.spool.store import Spool

ROOT = Path(__file__).resolve().parent.parent / "mailward"


def module_imports() -> dict[str, set[str]]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailward"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def package_imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in module_imports().items():
        out[package(a)].update(package(b) for b in targets if package(b) != package(a))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_cycle():
    assert cycles(module_imports()) == []


def test_no_package_cycle():
    assert cycles(package_imports()) == []


def test_data_flows_one_way():
    imports = package_imports()
    assert "mailward.deliver" not in imports["mailward.receive"], "receive must not import deliver"
    for pure in ("mailward.policy", "mailward.smtp"):
        assert not imports[pure] & {"mailward.receive", "mailward.spool", "mailward.deliver", "mailward.service"}, pure
    for role in ("mailward.receive", "mailward.deliver", "mailward.policy", "mailward.smtp", "mailward.spool",
                 "mailward.tls", "mailward.ca"):
        assert not imports[role] & {"mailward.service", "mailward.commands"}, role


def test_the_file_spool_is_a_queue(tmp_path):
    assert isinstance(Spool(tmp_path / "spool", fsync=False), Queue)
