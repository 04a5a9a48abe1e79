"""The package's shape: no import cycle (module level or inside functions), no source file over 400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """{module: the ferkit modules it imports anywhere in its text}."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name and not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


LAYERS = [  # lowest first; the same list as docs/DESIGN.md "Source layout"
    ["ferkit.runtime", "ferkit.data"],
    ["ferkit.models"],
    ["ferkit.strategies", "ferkit.optim", "ferkit.tta"],
    ["ferkit.presets", "ferkit.config"],
    ["ferkit.report", "ferkit.calibration", "ferkit.metrics"],
    ["ferkit.evaluate"],
    ["ferkit.run_folder", "ferkit.train"],
    ["ferkit.posthoc"],
    ["ferkit.pretrained", "ferkit.card", "ferkit.experiments"],
    ["ferkit.infer"],
    ["ferkit.commands"],
    ["ferkit.cli", "ferkit.__main__", "ferkit"],
]

def layer_of(module: str) -> int:
    """The layer of a module: that of the longest entry it is or lies inside."""
    hits = [(len(name), i) for i, names in enumerate(LAYERS) for name in names
            if module == name or module.startswith(name + ".")]
    assert hits, f"{module} is in no layer: add it to LAYERS and docs/DESIGN.md"
    return max(hits)[1]


def design_layout() -> dict[str, int]:
    """docs/DESIGN.md's "Source layout" block: {top-level module or package of ferkit: its layer}."""
    text = (SRC.parent / "docs" / "DESIGN.md").read_text()
    block = text.split("```\nsrc/ferkit/\n", 1)[1].split("```", 1)[0]
    out = {}
    for line in block.splitlines():
        if m := re.match(r"  (\S.*?)\s+(\d+)  ", line):  # "  optim.py, tta.py 3  ...": names, layer
            for name in m.group(1).split(", "):
                out[name.removesuffix("/").removesuffix(".py")] = int(m.group(2))
    return out


def test_the_design_layout_is_the_tree_and_its_layers():
    """Every module and package at the top of src/ferkit, and no other, is in DESIGN.md's layout, at
    the layer LAYERS gives it (numbered from 1); __init__, __main__ and cli are the command's own."""
    top = {p.stem for p in (SRC / "ferkit").iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    layout = design_layout()
    assert set(layout) == top - {"__init__", "__main__"}
    assert {name: layer_of(f"ferkit.{name}") + 1 for name in layout} == layout


def test_imports_only_go_down_the_layers():
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
                    for m, deps in import_graph().items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []


def test_the_cli_only_lists_the_commands():
    """Every subcommand is a module of ferkit.commands of one shape, and the import graph sees cli -> each."""
    import ferkit.commands
    from ferkit.cli import COMMANDS

    on_disk = {p.stem for p in (SRC / "ferkit" / "commands").glob("*.py")} - {"__init__", "options", "model_options", "errors"}
    assert {c.__name__.rsplit(".", 1)[1] for c in COMMANDS} == on_disk
    for c in COMMANDS:
        assert callable(c.add_arguments) and callable(c.run) and c.NAME and c.HELP, c.__name__
    assert {f"ferkit.commands.{name}" for name in on_disk} <= import_graph()["ferkit.cli"]
    assert len((SRC / "ferkit" / "cli.py").read_text().splitlines()) < 150
    assert ferkit.commands.__doc__
