#!/usr/bin/env python3
"""The module import graph of src/ (the library and the binary): one node
per file, an edge A -> B when A names a path into B (`use`, or an inline
`crate::`/`super::`/`self::` path). Prints the edges as Graphviz dot with
--dot, and exits 1 naming every cycle it finds (Tarjan's SCCs).

    python3 tools/module_graph.py            # cycles, if any
    python3 tools/module_graph.py --dot > modules.dot
"""
import re
import sys
from pathlib import Path

SRC = Path(next((a for a in sys.argv[1:] if not a.startswith("--")), Path(__file__).resolve().parent.parent / "src"))


def module_of(path):
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[:2] == ["bin", "sentiment"]:
        parts = ["bin"] + parts[2:]
        if parts[-1] == "main":
            parts = parts[:-1]
    elif parts == ["lib"]:
        parts = []
    if parts and parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def resolve(path_parts, here, modules, root):
    """The longest known module a path names, from module `here`."""
    base = list(root)
    parts = list(path_parts)
    if parts and parts[0] == "crate":
        base, parts = list(root), parts[1:]
    elif parts and parts[0] == "sentiment":
        base, parts = [], parts[1:]
    elif parts and parts[0] in ("super", "self"):
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
    else:
        return None
    best = None
    for n in range(len(parts) + 1):
        candidate = tuple(base + parts[:n])
        if candidate in modules:
            best = candidate
    return best


def main():
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f): f for f in files}
    edges = set()
    path_re = re.compile(r"\b((?:crate|super|self|sentiment)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
    use_group = re.compile(r"use\s+((?:crate|super|self|sentiment)(?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)
    for module, f in modules.items():
        root = ("bin",) if module[:1] == ("bin",) else ()
        text = re.sub(r"//[^\n]*", "", f.read_text())
        # A test module may reach anything; the layering is about the code.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        names = [m.group(1).split("::") for m in path_re.finditer(text)]
        # Bare paths into a child module (`avx512::linear`).
        for m in re.finditer(r"(?<![:\w])([a-z_][a-z0-9_]*)::", text):
            if module + (m.group(1),) in modules:
                names.append(["self", m.group(1)])
        for m in use_group.finditer(text):
            prefix = m.group(1).split("::")
            for item in re.split(r"[,\s]+", m.group(2)):
                item = item.strip("{} ")
                if item and re.match(r"^[A-Za-z_]\w*(::\w+)*$", item):
                    names.append(prefix + item.split("::"))
        for parts in names:
            if module[:1] == ("bin",) and parts[0] == "sentiment":
                continue  # the binary on the library: one way by construction
            target = resolve(parts, module, modules, root)
            if target is not None and target != module and target != root:
                # A parent naming its own child's items is the room map (mod.rs),
                # not a dependency that can form a layering cycle unless the child
                # names the parent back; keep it and let cycles tell.
                edges.add((module, target))
    name = lambda m: "/".join(m) or "lib"
    if "--dot" in sys.argv:
        print("digraph modules {")
        for a, b in sorted(edges):
            print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
        return 0
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in list(modules):
        if v not in index:
            strong(v)
    print(f"{len(modules)} modules, {len(edges)} import edges, {len(sccs)} cycles")
    for scc in sccs:
        print("cycle:", ", ".join(sorted(name(m) for m in scc)))
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
