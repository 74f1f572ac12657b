#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a circle.

Reads every `.rs` file under a crate's `src/`, collects each module's
references to other modules of the same crate (`use crate::...`,
`use super::...`, and paths such as `crate::state::current()` written inline),
and looks for cycles:

- between modules (files): `a` uses `b` and `b` uses `a`, directly or
  through others;
- between folders: a file in `keys/` uses `binding/` and a file in
  `binding/` uses `keys/` (folders must depend on each other one way).

A module may use its own children and its parent's items it re-exports
(`mod.rs` listing `pub use`), which is not a circle: an edge to a module's
own ancestor is only a circle when the ancestor's own file uses it back.
Test modules (`#[cfg(test)] mod tests`) are skipped: they sit inside the
module they test.

Usage: check-imports.py CRATE_SRC [CRATE_SRC...]    (e.g. src core/src)
       check-imports.py --graph src                 (print the edges)
"""

import re
import sys
from pathlib import Path


def module_path(src: Path, file: Path) -> tuple:
    """`src/keys/store.rs` -> ("keys", "store"); `keys/mod.rs` -> ("keys",)."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_only(text: str) -> str:
    """The code of a Rust file with comments removed and every string,
    raw string and char literal emptied, in one pass (so that `//` inside
    a string or a quote inside a comment cannot derail either)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 258]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 12]):
            i = text.index("'", i + 2 if text[i + 1] != "\\" else i + 3) + 1
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip(text: str) -> str:
    """Source without comments, strings and `#[cfg(test)]` modules."""
    text = code_only(text)
    # A test module sits inside what it tests; drop it with its braces.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def use_trees(text: str):
    """Yield every path a `use` tree or inline path names, as segment lists."""
    # `use` declarations, with brace groups expanded.
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        tree = re.sub(r"\s+as\s+\w+", "", m.group(1))  # `store as keystore` names `store`
        yield from expand(re.sub(r"\s+", "", tree))
    # Inline paths (`crate::a::b(...)`, `super::x::Y`), outside `use`.
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", body):
        yield m.group(1).split("::")


def expand(tree: str, prefix=()):
    """`crate::{a::{self, B}, c}` -> [crate,a,self], [crate,a,B], [crate,c]."""
    brace = tree.find("{")
    if brace < 0:
        yield list(prefix) + [s for s in tree.split("::") if s]
        return
    head = [s for s in tree[:brace].split("::") if s]
    inner = tree[brace + 1 : tree.rfind("}")]
    depth, start = 0, 0
    for i, ch in enumerate(inner + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            part = inner[start:i]
            start = i + 1
            if part:
                yield from expand(part, tuple(prefix) + tuple(head))


def resolve(path, here, modules):
    """The module a path lands in, or None when it leaves the crate."""
    if not path or path[0] not in ("crate", "super", "self"):
        return None
    if path[0] == "crate":
        base, rest = (), path[1:]
    else:
        base = here
        rest = list(path)
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    target = tuple(base)
    for seg in rest:
        if seg == "self":
            continue
        if target + (seg,) in modules:
            target = target + (seg,)
        else:
            break
    return target


def graph(src: Path):
    files = sorted(src.rglob("*.rs"))
    modules = {module_path(src, f): f for f in files}
    edges = {m: set() for m in modules}
    for mod, file in modules.items():
        for path in use_trees(strip(file.read_text())):
            target = resolve(path, mod, modules)
            if target is None or target == mod:
                continue
            # A module reaching into its own children is ownership, not a
            # dependency on a peer.
            if target[: len(mod)] == mod:
                continue
            edges[mod].add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def name(mod):
    return "::".join(mod) or "(crate root)"


def folder_edges(edges):
    """Edges between top-level folders (and top-level files)."""
    out = {}
    for a, targets in edges.items():
        if not a:
            continue
        for b in targets:
            if b and a[0] != b[0]:
                out.setdefault(a[:1], set()).add(b[:1])
    return out


def main(argv):
    show = "--graph" in argv
    srcs = [Path(a) for a in argv if a != "--graph"]
    failed = False
    for src in srcs:
        failed_before = failed
        failed = False
        edges = graph(src)
        # The crate root declares every module and runs their init: it is
        # the top of the graph, and modules never use it back for items.
        edges.pop((), None)
        for targets in edges.values():
            targets.discard(())
        if show:
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f"{src}: {name(a)} -> {name(b)}")
        for comp in cycles(edges):
            failed = True
            loop = " <-> ".join(name(m) for m in comp)
            print(f"check-imports: {src}: modules import each other in a circle: {loop}")
            for a in comp:
                for b in sorted(edges[a] & set(comp)):
                    print(f"    {name(a)} uses {name(b)}")
        for comp in cycles(folder_edges(edges)):
            failed = True
            loop = " <-> ".join(name(m) for m in comp)
            print(f"check-imports: {src}: folders depend on each other both ways: {loop}")
            for a in comp:
                for b, targets in sorted(edges.items()):
                    if b[:1] == a:
                        for t in sorted(targets):
                            if t[:1] in comp and t[:1] != a:
                                print(f"    {name(b)} uses {name(t)}")
        if not failed:
            print(f"check-imports: {src}: {len(edges)} modules, no import circle")
        failed = failed or failed_before
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
