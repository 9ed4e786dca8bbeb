"""The layering of agd_deploy, as docs/ARCHITECTURE.md states it ("Layers"), checked on every import.

The layer list, the known exceptions and the forbidden imports are parsed FROM the doc, so the doc and this
test cannot drift apart: placing a new subpackage, moving a layer or allowing an exception is an edit of the
doc. Every import counts: module level and inside functions, `import agd_deploy.x`, `from agd_deploy.x import`,
relative `from ..x import` / `from . import x`, and the lazy string references of the registries
(`"agd_deploy.commands.info:info"` in cli.COMMANDS, `"agd_deploy.runtimes.ort:OrtRuntime"` in ADAPTERS).
Pure parsing (ast): nothing is imported, nothing is timed."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "agd_deploy"
DOC = REPO / "docs" / "ARCHITECTURE.md"
ROOT = "agd_deploy"
# A string that names a package module (optionally ":attribute"), as lazy registries hold them.
MODULE_STRING = re.compile(r"agd_deploy(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?")


# --- the doc --------------------------------------------------------------------------------------------

def fenced_block(text: str, heading: str) -> list[str]:
    """The lines of the first fenced block after the Markdown heading `heading` (any level), before the next
    heading; '#' comments and blank lines dropped."""
    lines = text.splitlines()
    pat = re.compile(r"^#{1,6}\s+" + re.escape(heading) + r"\s*$")
    start = next((i for i, line in enumerate(lines) if pat.match(line.strip())), None)
    if start is None:
        raise AssertionError(f"{DOC.name}: no heading {heading!r}")
    out: list[str] | None = None
    for line in lines[start + 1:]:
        s = line.strip()
        if out is None:
            if s.startswith("#") and not s.startswith("```"):
                break  # the next heading came first
            if s.startswith("```"):
                out = []
            continue
        if s.startswith("```"):
            return [x for x in out if x and not x.startswith("#")]
        out.append(s.split("  #")[0].strip() if "  #" in s else s)
    raise AssertionError(f"{DOC.name}: no fenced block under heading {heading!r}")


def parse_layers(lines: list[str]) -> tuple[list[str], dict[str, int]]:
    """`name: module, module` per line, bottom layer first -> (layer names, {module: layer index})."""
    names: list[str] = []
    where: dict[str, int] = {}
    for line in lines:
        name, sep, mods = line.partition(":")
        assert sep and name.strip(), f"layer line {line!r} is not 'name: module, module'"
        names.append(name.strip())
        for m in (m.strip() for m in mods.split(",")):
            assert m, f"layer line {line!r} has an empty module"
            assert m not in where, f"module {m} is in two layers"
            where[m] = len(names) - 1
    return names, where


@dataclass(frozen=True)
class Exception_:
    file: str     # agd_deploy/x/y.py
    line: int     # where it was when the doc was written (lines drift as files are edited)
    target: str   # the imported module, dotted (agd_deploy.x.y)


def parse_exceptions(lines: list[str]) -> list[Exception_]:
    """`agd_deploy/x/y.py:123 imports agd_deploy.z.w` per line; `(none)` for no exception."""
    out = []
    for line in lines:
        if line.lower() in ("(none)", "none"):
            continue
        m = re.fullmatch(r"(agd_deploy/\S+\.py):(\d+)\s+imports\s+(agd_deploy(?:\.\w+)*)\b.*", line)
        assert m, f"exception line {line!r} is not 'agd_deploy/x/y.py:LINE imports agd_deploy.z ...'"
        out.append(Exception_(m.group(1), int(m.group(2)), m.group(3)))
    return out


def parse_forbidden(lines: list[str]) -> dict[str, set[str]]:
    """`module: module, module` per line: imports not allowed even though they go down."""
    out: dict[str, set[str]] = {}
    for line in lines:
        name, sep, mods = line.partition(":")
        assert sep, f"forbidden line {line!r} is not 'module: module, module'"
        out.setdefault(name.strip(), set()).update(m.strip() for m in mods.split(",") if m.strip())
    return out


@dataclass
class Rules:
    layers: list[str]
    layer_of: dict[str, int]
    exceptions: list[Exception_]
    forbidden: dict[str, set[str]]


def load_rules(text: str) -> Rules:
    layers, layer_of = parse_layers(fenced_block(text, "Layers"))
    return Rules(layers, layer_of, parse_exceptions(fenced_block(text, "Known exceptions")),
                 parse_forbidden(fenced_block(text, "Forbidden imports")))


# --- the code -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    file: str      # agd_deploy/x/y.py
    line: int
    target: str    # dotted module (or module.attribute) imported
    component: str # the top-level unit of agd_deploy it belongs to ("__init__": the package root)


def module_of(rel: str) -> str:
    """agd_deploy/x/y.py -> agd_deploy.x.y; agd_deploy/x/__init__.py -> agd_deploy.x."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def component_of_file(rel: str) -> str:
    parts = Path(rel).parts  # ("agd_deploy", "x", "y.py") or ("agd_deploy", "y.py")
    if len(parts) == 2:
        return Path(parts[1]).stem  # errors, utils, device, demo, cli, __init__, __main__
    return parts[1]


def component_of_module(dotted: str, components: set[str]) -> str:
    """The unit a dotted name inside agd_deploy belongs to; the package root's own names (`__version__`)
    belong to `__init__`."""
    parts = dotted.split(".")
    if len(parts) >= 2 and parts[1] in components:
        return parts[1]
    return "__init__"


def imports_of(source: str, rel: str, components: set[str]) -> list[Import]:
    """Every import of an agd_deploy module in one file's source, wherever it sits."""
    tree = ast.parse(source, filename=rel)
    here = module_of(rel)
    package = here if rel.endswith("__init__.py") else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import name`: name may be a submodule (from .. import nets) or an attribute
            found += [(node.lineno, f"{mod}.{a.name}" if a.name != "*" else mod) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.fullmatch(node.value):
            found.append((node.lineno, node.value.split(":")[0]))
    return [Import(rel, line, t, component_of_module(t, components)) for line, t in sorted(found)
            if t == ROOT or t.startswith(ROOT + ".")]


def package_files() -> dict[str, str]:
    return {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PKG.rglob("*.py"))}


def package_components(files) -> set[str]:
    return {component_of_file(rel) for rel in files}


def violations(files: dict[str, str], rules: Rules, components: set[str] | None = None) -> tuple[list[str], set]:
    """(one line per import of a higher layer or a forbidden one, the exceptions that were used)."""
    components = components if components is not None else package_components(files)
    bad: list[str] = []
    used: set[Exception_] = set()
    for rel, src in files.items():
        src_comp = component_of_file(rel)
        if src_comp not in rules.layer_of:
            continue  # reported by the placement test
        lo = rules.layer_of[src_comp]
        for imp in imports_of(src, rel, components):
            if imp.component == src_comp or imp.component not in rules.layer_of:
                continue
            hi = rules.layer_of[imp.component]
            upward = hi > lo
            forbidden = imp.component in rules.forbidden.get(src_comp, ())
            if not (upward or forbidden):
                continue
            exc = next((e for e in rules.exceptions if e.file == rel
                        and (imp.target == e.target or imp.target.startswith(e.target + "."))), None)
            if exc is not None:
                used.add(exc)
                continue
            why = "forbidden" if forbidden and not upward else "upward"
            bad.append(f"{rel}:{imp.line} imports {imp.target} (layer {rules.layers[hi]}) from layer "
                       f"{rules.layers[lo]} ({why})")
    return bad, used


# --- the tests ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return package_files()


def test_every_module_is_placed_in_a_layer(rules, files):
    comps = package_components(files)
    unplaced = sorted(comps - set(rules.layer_of))
    assert not unplaced, (f"not in any layer of {DOC.relative_to(REPO)} (\"Layers\"): {', '.join(unplaced)}; "
                          "place each (a new subpackage must be placed)")
    stale = sorted(set(rules.layer_of) - comps)
    assert not stale, f"{DOC.relative_to(REPO)} places modules that do not exist: {', '.join(stale)}"
    for name, mods in rules.forbidden.items():
        assert name in comps and mods <= comps, f"\"Forbidden imports\" names unknown modules: {name}: {mods}"


def test_no_import_goes_up_a_layer(rules, files):
    bad, used = violations(files, rules)
    assert not bad, ("imports against the layers of docs/ARCHITECTURE.md (\"Layers\"); move the code, or list the "
                     "import under \"Known exceptions\" with a reason:\n  " + "\n  ".join(bad))
    unused = [f"{e.file}:{e.line} imports {e.target}" for e in rules.exceptions if e not in used]
    assert not unused, ("\"Known exceptions\" lists imports that no longer go up (remove them from the doc):\n  "
                        + "\n  ".join(unused))


SYNTHETIC_DOC = """
## Layers
```text
core: __init__, errors
model: space
runtimes: runtimes
cli: cli
```
### Known exceptions
```text
agd_deploy/space/allowed.py:3 imports agd_deploy.runtimes.timing   # allowed on purpose
```
### Forbidden imports
```text
cli: errors
```
"""


def test_the_check_reports_an_upward_import():
    """The check itself can fail: synthetic sources with upward imports of every syntax are all reported."""
    rules = load_rules(SYNTHETIC_DOC)
    files = {
        "agd_deploy/errors.py": "from .space import Arch\n",                      # core -> model
        "agd_deploy/space/ops.py": ("import os\n"
                                    "def f():\n"
                                    "    from ..runtimes.targets import lower\n"  # inside a function
                                    "    import agd_deploy.cli\n"                 # absolute
                                    "    from .. import runtimes\n"               # package as a name
                                    "    return 'agd_deploy.cli:main'\n"          # lazy registry string
                                    "from . import frames\n"                      # same unit: fine
                                    "from ..errors import AgdError\n"),           # downward: fine
        "agd_deploy/space/allowed.py": "\n\nfrom ..runtimes.timing import measure\n",  # a listed exception
        "agd_deploy/runtimes/base.py": "from ..space import Arch\nfrom .. import __version__\n",  # downward
        "agd_deploy/cli.py": "from .errors import AgdError\n",                    # forbidden though downward
    }
    bad, used = violations(files, rules, components={"__init__", "errors", "space", "runtimes", "cli"})
    assert bad == [
        "agd_deploy/errors.py:1 imports agd_deploy.space.Arch (layer model) from layer core (upward)",
        "agd_deploy/space/ops.py:3 imports agd_deploy.runtimes.targets.lower (layer runtimes) from layer model "
        "(upward)",
        "agd_deploy/space/ops.py:4 imports agd_deploy.cli (layer cli) from layer model (upward)",
        "agd_deploy/space/ops.py:5 imports agd_deploy.runtimes (layer runtimes) from layer model (upward)",
        "agd_deploy/space/ops.py:6 imports agd_deploy.cli (layer cli) from layer model (upward)",
        "agd_deploy/cli.py:1 imports agd_deploy.errors.AgdError (layer core) from layer cli (forbidden)",
    ]
    assert [e.file for e in used] == ["agd_deploy/space/allowed.py"]


def test_doc_citations_resolve():
    """Code cites sections as `docs/ARCHITECTURE.md, "Section"`: each must be a heading of the doc. The team's
    design notes outside the repository are never cited (a clone does not have them)."""
    text = DOC.read_text(encoding="utf-8")
    headings = [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6}\s", line)]
    outside = "".join(["DESIGN", ".md"])  # built at run time: a grep for citations finds none here (nor in .pyc)
    missing, cites_outside = [], []
    paths = [*PKG.rglob("*.py"), *(REPO / "tests").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py"),
             REPO / "README.md", REPO / "latency_tables" / "README.md", DOC]
    for p in paths:
        if not p.is_file() or p == Path(__file__).resolve():  # this file quotes both on purpose
            continue
        src = p.read_text(encoding="utf-8")
        rel = p.relative_to(REPO).as_posix()
        for m in re.finditer(r"docs/ARCHITECTURE\.md,\s+\"([^\"]+)\"", src):
            if not any(h.startswith(m.group(1)) for h in headings):
                missing.append(f"{rel}:{src.count(chr(10), 0, m.start()) + 1} cites \"{m.group(1)}\"")
        if outside in src:
            cites_outside += [f"{rel}:{i}" for i, line in enumerate(src.splitlines(), 1) if outside in line]
    assert not missing, "sections cited but not headings of docs/ARCHITECTURE.md:\n  " + "\n  ".join(missing)
    assert not cites_outside, (f"{outside} is not in the repository; cite docs/ARCHITECTURE.md instead:\n  "
                               + "\n  ".join(cites_outside))


def test_the_doc_parser_refuses_a_malformed_layer_list():
    with pytest.raises(AssertionError, match="two layers"):
        parse_layers(["core: errors", "model: errors"])
    with pytest.raises(AssertionError, match="no heading"):
        load_rules("## Something else\n")
