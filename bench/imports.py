"""How long ``import incsync`` takes, in fresh interpreters, for one or more source trees.

Run ``python -m bench.imports`` from the project root to measure the working tree, or give the
trees to compare: ``python -m bench.imports src before=/path/to/other/checkout/src``. Each tree is
a ``src`` folder (or a checkout holding one), optionally labelled ``LABEL=PATH``; the first is
the reference the others are compared with. ``--runs N`` (default 20; ``--quick``: 5) fresh
interpreters per tree, interleaved (tree A, tree B, tree B, tree A, ...), so load drift falls on
every tree alike. Figures are printed and written to ``bench/imports-results.json``
(``bench/imports-results-quick.json`` for ``--quick``), or ``--output``.

Each run is ``python -X importtime -c "import incsync"`` with this interpreter and the tree first
on ``PYTHONPATH`` (ahead of the installed package), and the figure is the ``cumulative`` time
``-X importtime`` reports for ``incsync``: everything importing it loaded, its dependencies
included, and nothing of the interpreter's own start-up. The child's whole wall-clock time is
recorded beside it. A run first checks that ``incsync`` came from the tree it was given.

Bytecode: every interpreter reads and writes its compiled modules under one temporary
``PYTHONPYCACHEPREFIX`` (an untimed first import per tree fills it), as an installed package has
its ``.pyc`` files. Without it, a tree whose ``__pycache__`` cannot be written (or a
``PYTHONDONTWRITEBYTECODE`` environment) would compile every module on every run, which is not
what a host's import costs; the source trees themselves are left untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.core import git, load_average

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "bench"
RUNS = 20
QUICK_RUNS = 5
MODULE = "incsync"
# Third-party modules whose presence after the import is reported: the HTTP stack that a host
# rendering only status should not pay for.
WATCHED = ("httpx", "tenacity", "httpcore", "h11", "certifi", "attrs")
_PROBE = (
    "import json, sys; import incsync; "
    "print(json.dumps({'file': incsync.__file__, 'modules': sorted(sys.modules)}))"
)


@dataclass(frozen=True)
class Tree:
    """A source tree to import incsync from."""

    label: str
    src: Path


def tree(argument: str) -> Tree:
    """Read ``[LABEL=]PATH``: a ``src`` folder, or a checkout holding ``src/incsync``."""
    label, _, path_text = argument.rpartition("=")
    path = Path(path_text).resolve()
    if (path / "src" / MODULE).is_dir():
        path = path / "src"
    if not (path / MODULE).is_dir():
        raise argparse.ArgumentTypeError(f"{path} holds no {MODULE} package")
    return Tree(label or ("working tree" if path == ROOT / "src" else str(path)), path)


def child_env(src: Path, pycache: Path) -> dict[str, str]:
    """The environment of one run: ``src`` first on the path, compiled modules under ``pycache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def probe(item: Tree, pycache: Path) -> dict[str, Any]:
    """Import incsync once from ``item`` (untimed, filling the bytecode cache); check where from."""
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=child_env(item.src, pycache),
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(completed.stdout)
    if not Path(found["file"]).resolve().is_relative_to(item.src):
        raise RuntimeError(f"{item.label}: incsync came from {found['file']}, not {item.src}")
    modules: list[str] = found["modules"]
    tops = {name.partition(".")[0] for name in modules}
    return {
        "incsync_file": found["file"],
        "modules_loaded": len(modules),
        "incsync_modules_loaded": sum(1 for name in modules if name.partition(".")[0] == MODULE),
        "watched_loaded": [name for name in WATCHED if name in tops],
    }


def cumulative_us(importtime: str) -> int:
    """Return the cumulative microseconds ``-X importtime`` gives the top-level ``incsync``."""
    # Lines read "import time: <self us> | <cumulative us> | <indented module name>".
    for line in importtime.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[2].strip() == MODULE:
            return int(fields[1])
    raise RuntimeError(f"-X importtime reported no line for {MODULE}")


def run_once(item: Tree, pycache: Path) -> tuple[int, float]:
    """One fresh interpreter: (incsync's cumulative import µs, the child's wall-clock seconds)."""
    began = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {MODULE}"],
        env=child_env(item.src, pycache),
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - began
    return cumulative_us(completed.stderr), wall


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def measure(trees: list[Tree], runs: int) -> list[dict[str, Any]]:
    """Run every tree ``runs`` times, interleaved; return each tree's figures."""
    with tempfile.TemporaryDirectory(prefix="incsync-bench-pycache-") as tmp:
        pycache = Path(tmp)
        probes = [probe(item, pycache) for item in trees]
        cumulative: list[list[float]] = [[] for _ in trees]
        walls: list[list[float]] = [[] for _ in trees]
        for number in range(runs):
            # Alternate the order (A B, B A, ...) so neither tree always runs first.
            order = list(enumerate(trees))
            if number % 2:
                order.reverse()
            for index, item in order:
                us, wall = run_once(item, pycache)
                cumulative[index].append(us / 1000)
                walls[index].append(wall * 1000)
    reference = statistics.median(cumulative[0])
    return [
        {
            "label": item.label,
            "src": str(item.src),
            "commit": git("-C", str(item.src), "rev-parse", "--short", "HEAD"),
            **found,
            "import_cumulative_ms": spread(cumulative[index]),
            "child_wall_ms": spread(walls[index]),
            "ratio_to_first": round(statistics.median(cumulative[index]) / reference, 3),
            "import_cumulative_ms_runs": [round(ms, 2) for ms in cumulative[index]],
        }
        for index, (item, found) in enumerate(zip(trees, probes, strict=True))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imports", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "trees",
        nargs="*",
        type=tree,
        metavar="[LABEL=]PATH",
        help="source trees (a src folder or a checkout); default: this working tree",
    )
    parser.add_argument("--runs", type=int, help=f"fresh interpreters per tree (default {RUNS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs per tree")
    parser.add_argument("--output", type=Path, help="where to write the figures as JSON")
    args = parser.parse_args(argv)
    trees: list[Tree] = args.trees or [Tree("working tree", ROOT / "src")]
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    if runs < 1:
        parser.error("--runs must be at least 1")
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} cores")
    load_before = load_average()
    print(f"load average at start: {load_before}")
    print(f'{runs} fresh interpreters per tree, interleaved: -X importtime -c "import {MODULE}"')
    rows = measure(trees, runs)
    print()
    header = (
        f"{'tree':<24} {'commit':<9} {'import ms, median (range)':<27} {'ratio':>6} "
        f"{'child ms':>9} {'modules':>8}  third-party loaded"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        figures = row["import_cumulative_ms"]
        text = f"{figures['median']:.1f} ({figures['min']:.1f}-{figures['max']:.1f})"
        print(
            f"{row['label'][:24]:<24} {row['commit'] or '-':<9} {text:<27} "
            f"{row['ratio_to_first']:>6.3f} {row['child_wall_ms']['median']:>9.1f} "
            f"{row['modules_loaded']:>8}  {', '.join(row['watched_loaded']) or 'none'}"
        )
    results = {
        "benchmark": "imports",
        "quick": args.quick,
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "load_average_start": load_before,
        "load_average_end": load_average(),
        "runs_per_tree": runs,
        "measure": (
            f'cumulative time -X importtime reports for {MODULE} in "python -X importtime -c '
            f'import {MODULE}", the tree first on PYTHONPATH, bytecode cached under one '
            "PYTHONPYCACHEPREFIX; median and range over the runs"
        ),
        "ratio_definition": "each tree's median over the first tree's median",
        "trees": rows,
    }
    path = args.output or HERE / f"imports-results{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
