#!/usr/bin/env bash
# include-graph.sh [SRC_DIR] - the include graph of src/ (docs/DESIGN.md "Layout").
#
# Reads every #include of src/ (the portable core), src/linux/ (Linux-only code),
# src/store/ (the snapshot store) and src/kvm/ (libsquib-kvm), resolves the quoted
# ones to files and the <squib/...> ones to include/squib/, and prints:
#   - per directory, which directories its files include (file counts);
#   - whether the file-level graph has a cycle (a header reached from itself);
#   - every core file (src/*.c, src/*.h) that includes platform code: a header of
#     src/linux/ or src/kvm/, or a kernel header <linux/...>, <asm/...>;
#   - every core file that calls a Linux-only module (one implemented in src/linux/ only)
#     through its public header: a call, not an include.
# Exit status: 0, or 1 when there is a cycle or a core file includes platform code
# (ctest runs it as test_include_graph).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$(cd "$here/.." && pwd)}
exec python3 - "$src" <<'EOF'
import os, re, sys
from collections import defaultdict

root = sys.argv[1]
inc = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
files = []
for d in ("src", "src/linux", "src/store", "src/kvm"):
    p = os.path.join(root, d)
    if os.path.isdir(p):
        files += [os.path.join(d, f) for f in sorted(os.listdir(p)) if f.endswith((".c", ".h"))]

def area(f):
    if f.startswith("include/"):
        return "include/squib"
    return os.path.dirname(f)

edges = defaultdict(set)    # file -> files it includes (inside the repository)
system = defaultdict(set)   # file -> kernel headers it includes
for f in files:
    with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = inc.match(line)
            if not m:
                continue
            kind, name = m.groups()
            if kind == '"':
                t = os.path.normpath(os.path.join(os.path.dirname(f), name))
                if os.path.exists(os.path.join(root, t)):
                    edges[f].add(t)
            elif name.startswith("squib/"):
                edges[f].add("include/" + name)
            elif name.split("/")[0] in ("linux", "asm"):
                system[f].add("<%s>" % name)

print("include graph of src/ (directory -> directories it includes: files)")
by_area = defaultdict(lambda: defaultdict(int))
for f in files:
    for t in edges[f]:
        if area(t) != area(f):
            by_area[area(f)][area(t)] += 1
for a in ("src", "src/linux", "src/store", "src/kvm"):
    if a in by_area or any(area(f) == a for f in files):
        targets = ", ".join("%s: %d" % (t, n) for t, n in sorted(by_area[a].items()))
        print("  %-10s -> %s" % (a, targets or "(nothing outside)"))

# A cycle among the repository's files (headers including each other).
state, stack, cycle = {}, [], []
def visit(f):
    state[f] = 1
    stack.append(f)
    for t in sorted(edges.get(f, ())):
        if state.get(t) == 1 and not cycle:
            cycle.extend(stack[stack.index(t):] + [t])
        elif t not in state:
            visit(t)
    stack.pop()
    state[f] = 2
for f in files:
    if f not in state:
        visit(f)
print("cycle: " + (" -> ".join(cycle) if cycle else "none (%d files, %d include edges)"
                   % (len(files), sum(len(v) for v in edges.values()))))

core = [f for f in files if area(f) == "src"]
bad = 0
print("core files (src/*.c, src/*.h) including platform code:")
for f in core:
    plat = sorted(t for t in edges[f] if area(t) in ("src/linux", "src/kvm")) + sorted(system[f])
    if plat:
        print("  %s: %s" % (f, ", ".join(plat)))
        bad += 1 # the core builds without them (arm64, docs/DESIGN.md "Layout")
if not any(sorted(t for t in edges[f] if area(t) in ("src/linux", "src/kvm")) or system[f]
           for f in core):
    print("  none")

# A public header whose module lives in src/linux only (squib/pager.h -> src/linux/pager.c):
# the core reaches Linux code through it, by function call, not by include.
def linux_only(h):
    stem = os.path.basename(h)[:-2]
    return (os.path.exists(os.path.join(root, "src/linux", stem + ".c"))
            and not os.path.exists(os.path.join(root, "src", stem + ".c")))
print("core files calling a Linux-only module (src/linux/) through its public header:")
api = re.compile(r'SQUIB_API[^;(]*?\b(squib_\w+)\s*\(')
linux_api = {}
for h in sorted(os.listdir(os.path.join(root, "include/squib"))):
    if h.endswith(".h") and linux_only("include/squib/" + h):
        with open(os.path.join(root, "include/squib", h), encoding="utf-8") as fh:
            for name in api.findall(fh.read()):
                linux_api[name] = "squib/" + h
users = []
for f in core:
    if f.endswith(".c"):
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        users.append((f, sorted({linux_api[n] for n in linux_api if re.search(r"\b%s\s*\(" % n, text)})))
for f, hs in users:
    if hs:
        print("  %s: %s" % (f, ", ".join(hs)))
if not any(hs for _, hs in users):
    print("  none")
sys.exit(1 if cycle or bad else 0)
EOF
