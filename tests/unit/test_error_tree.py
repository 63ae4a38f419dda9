"""One error tree: every public exception class of LQS derives from ``LqsError``, and the
tree drawn in ``lqs.errors``'s docstring is the tree the classes form."""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

import lqs
import lqs.errors
from lqs.errors import LqsError

_NODE = re.compile(r"^(?P<indent>\s*)[*+\-·] (?P<name>\w+)(?: \((?P<extra>\w+)\))?$")


def _modules() -> list[ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(lqs.__path__, prefix="lqs.")
        if info.name != "lqs.__main__"  # importing it runs the command line
    ]
    return [importlib.import_module(name) for name in names]


def _public_exceptions(simulator: bool) -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        if module.__name__.startswith("lqs.simulator") != simulator:
            continue
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[name] = value
    return found


def _drawn_tree() -> dict[str, tuple[str | None, str | None]]:
    """Each class the docstring draws: (its parent in the tree, its second base)."""
    doc = lqs.errors.__doc__ or ""
    drawn: dict[str, tuple[str | None, str | None]] = {}
    parents: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = _NODE.match(line)
        if match is None:
            continue
        depth = len(match["indent"])
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[match["name"]] = (parents[-1][1] if parents else None, match["extra"])
        parents.append((depth, match["name"]))
    return drawn


def test_every_public_exception_class_derives_from_lqs_error() -> None:
    exceptions = _public_exceptions(simulator=False)
    assert len(exceptions) >= 17
    assert [name for name, cls in exceptions.items() if not issubclass(cls, LqsError)] == []


def test_the_simulators_exceptions_stay_outside_the_tree() -> None:
    # The simulator checks our adapters independently: it shares nothing with lqs.
    for name, cls in _public_exceptions(simulator=True).items():
        assert not issubclass(cls, LqsError), name


def test_the_docstring_draws_every_class_with_its_parent_and_second_base() -> None:
    exceptions = _public_exceptions(simulator=False)
    drawn = _drawn_tree()

    assert set(drawn) == set(exceptions)
    for name, (parent, extra) in drawn.items():
        bases = [base.__name__ for base in exceptions[name].__bases__]
        expected = [parent or "Exception"] + ([extra] if extra else [])
        assert bases == expected, name


def test_an_error_reads_as_one_line_with_its_action() -> None:
    error = LqsError("the file  has\nno header", action="add one and run again")

    assert error.one_line() == "the file has no header; add one and run again"
    assert LqsError("just this").one_line() == "just this"
