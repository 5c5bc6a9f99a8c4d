"""No import cycle among the modules of ``fastdrop/``, lazy imports inside
functions included.

The graph is read from the source (``ast``): an edge ``a -> b`` for every
``import``/``from ... import`` in module ``a`` (at any depth) that names
module ``b`` of the package, or a name that is a submodule of ``b``.  A
package's ``__init__`` counts as the package.  Cython sources are read for
their ``from ... import`` lines too.
"""

import ast
import os
import re

import fastdrop

#: The package's directory: the source tree's, or the installed one when the tests
#: run against an installed wheel.
ROOT = os.path.dirname(os.path.abspath(fastdrop.__file__))


def _modules():
    """module name -> (path, is_package)"""
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        if "__pycache__" in dirpath:
            continue
        rel = os.path.relpath(dirpath, os.path.dirname(ROOT)).replace(os.sep, ".")
        for f in files:
            if f.endswith((".py", ".pyx")):
                stem = f.rsplit(".", 1)[0]
                name = rel if stem == "__init__" else f"{rel}.{stem}"
                mods[name] = (os.path.join(dirpath, f), stem == "__init__")
    return mods


def _resolve(module, is_pkg, level, target):
    if level == 0:
        return target
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(name, path, is_pkg, mods):
    src = open(path, encoding="utf-8").read()
    targets = []
    if path.endswith(".pyx"):  # Python-level imports of a Cython module
        for m in re.finditer(r"^\s*from\s+(\S+)\s+import\s+([\w, ]+)", src, re.M):
            targets.append((m.group(1), [n.strip() for n in m.group(2).split(",")]))
        for m in re.finditer(r"^\s*import\s+([\w.]+)", src, re.M):
            targets.append((m.group(1), []))
    else:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                targets += [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = _resolve(name, is_pkg, node.level, node.module or "")
                targets.append((mod, [a.name for a in node.names]))
    edges = set()
    for mod, names in targets:
        for cand in [f"{mod}.{n}" for n in names] + [mod]:
            if cand in mods and cand != name:
                edges.add(cand)
                if cand != mod:
                    break
    return edges


def _graph():
    mods = _modules()
    return {m: _imports(m, p, pkg, mods) for m, (p, pkg) in mods.items()}


def _cycle(graph):
    """One cycle as a list of modules, or None (iterative DFS)."""
    state = {}
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_graph_is_read():
    g = _graph()
    assert "fastdrop._api" in g and "fastdrop._plan" in g["fastdrop._api"]
    assert "fastdrop._validate" in g["fastdrop._cuda.frontend"]


def test_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cyc = _cycle(_graph())
    assert cyc is None, "import cycle: " + " -> ".join(cyc)
