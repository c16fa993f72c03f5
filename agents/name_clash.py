"""One line for a clash of import names: the `openai-agents` distribution installs a top-level `agents` too.

With both installed, Python imports one of the two `agents` (the first on the path, or the files of both
mixed in one folder) and the other fails somewhere deep inside. `cuma` checks at its start
(`agents.cli.main`), and this package answers a name it lacks (`from agents import Agent`) with the same line.
Standard library only, so the check also runs from this file when the other `agents` shadows ours.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

OTHER = "openai-agents"  # the distribution whose top-level package is also named `agents`
HOME = Path(__file__).resolve().parent  # this project's `agents` folder


def other_agents() -> Path | None:
    """The folder of the other distribution's `agents` package, when that distribution is installed."""
    try:
        dist = importlib.metadata.distribution(OTHER)
    except importlib.metadata.PackageNotFoundError:
        return None
    files = dist.files
    if files is not None and not any(f.parts[:1] == ("agents",) for f in files):
        return None  # installed, but with no `agents` package (not the layout this check knows)
    return Path(dist.locate_file("agents")).resolve()


def imported_agents() -> Path | None:
    """The folder `import agents` gives here: the one already imported, else the first on the path."""
    module = sys.modules.get("agents")
    origin = getattr(module, "__file__", None)
    if origin is None and module is None:
        spec = importlib.util.find_spec("agents")
        origin = spec.origin if spec is not None else None
    return Path(origin).resolve().parent if origin else None


def clash_message() -> str | None:
    """The one line naming both packages, which one Python imports, and the fix; None without a clash."""
    other = other_agents()
    if other is None:
        return None
    if other == HOME:
        where = f"both installed into {HOME}, their files mixed"
    else:
        imported = imported_agents()
        which = {HOME: "cuma-gym's", other: f"{OTHER}'"}.get(imported, str(imported))
        where = f"cuma-gym's ({HOME}) and {OTHER}' ({other}); Python imports {which}"
    return (f"cuma: two installed packages are named `agents`: {where}. Fix: pip uninstall {OTHER}, or install "
            "cuma-gym in a virtual environment of its own (python -m venv)")


def missing_name(package: str, name: str) -> Exception:
    """What `agents.<name>` raises for a name this package lacks: `ImportError(clash_message())` when the
    other `agents` is installed and `name` looks like its API (not a dunder, not one of our submodules)."""
    if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is None:
        message = clash_message()
        if message is not None:
            return ImportError(message)
    return AttributeError(f"module {package!r} has no attribute {name!r}")
