#!/usr/bin/env python3
"""Lists which modules each module of daemon/src uses (`crate::a::…`, or `super::x` inside a
folder) and reports cycles. Usage: dev/module-deps.py [top|store/sqlite]  (exit 1 on a cycle)."""
import os, re, sys

ROOT = os.path.join(os.path.dirname(__file__), '..', 'daemon', 'src')
scope = sys.argv[1] if len(sys.argv) > 1 else 'top'


def strip_tests(text):
    # Test modules may reach anywhere; only the shipped code's shape is checked.
    i = text.find('#[cfg(test)]\nmod ')
    return text if i < 0 else text[:i]


def modules(base):
    out = {}
    for dirpath, _, files in os.walk(base):
        for f in files:
            if f.endswith('.rs'):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, base)
                out[rel] = strip_tests(open(p).read())
    return out


def grouped(root, text):
    """The first segment of each path in `root::{a::x, b, …}`."""
    out = []
    for g in re.findall(root + r'::\{([^}]*)\}', text):
        out += [p.strip().split('::')[0] for p in g.split(',') if p.strip()]
    return [m for m in out if re.fullmatch(r'[a-z_]+', m)]


edges = {}
if scope == 'top':
    for rel, text in modules(ROOT).items():
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib', 'main'):
            continue
        for m in re.findall(r'crate::([a-z_]+)', text) + grouped('crate', text):
            if m != top:
                edges.setdefault(top, set()).add(m)
        edges.setdefault(top, set())
else:
    base = os.path.join(ROOT, scope)
    names = {f.removesuffix('.rs') for f in os.listdir(base) if f.endswith('.rs')} - {'mod'}
    for rel, text in modules(base).items():
        name = rel.removesuffix('.rs')
        if name == 'mod':
            continue
        deps = set(re.findall(r'super::([a-z_]+)', text) + grouped('super', text)) | set(
            re.findall(r'crate::' + scope.replace('/', '::') + r'::([a-z_]+)', text))
        edges[name] = {d for d in deps if d in names and d != name}

for k in sorted(edges):
    print(f"{k:12} -> {', '.join(sorted(edges[k]))}")

# Cycles: strongly connected components with more than one module.
index, low, stack, on, comps = {}, {}, [], set(), []
def visit(v, counter=[0]):
    index[v] = low[v] = counter[0]; counter[0] += 1
    stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in index:
        visit(v)
for c in comps:
    print("cycle:", " <-> ".join(c))
sys.exit(1 if comps else 0)
