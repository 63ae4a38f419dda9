"""Plain ``--help``: every option shows a name for its value (``--client SLUG``), flags none.

Typer tags each parameter with its Python type (``<str>``, ``<bool>``, ``<int range>``),
which tells an operator nothing. :class:`PlainHelpGroup`, the root command's class, gives
every parameter of the whole tree a metavar before it parses anything: the one a command
declared, else one made from the option (its name, ``FILE`` for a file, the choices).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.models import Context

_BY_OPTION = {"--client": "SLUG"}
"""Metavars by option name, for options several commands declare."""


class _PlainArgument(TyperArgument):
    """An argument whose help shows its metavar alone, with no type tag after it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class PlainHelpGroup(TyperGroup):
    """The root command: before running, plain help for itself and every subcommand."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        plain_help(self)
        return super().main(*args, **kwargs)


def plain_help(command: Any) -> None:
    """Give every parameter of ``command`` and of its subcommands, the help option included,
    a plain metavar (see the module's docstring). Doing it twice changes nothing."""
    help_option = command.get_help_option(Context(command))
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption):
            param.metavar = _option_metavar(param)
        elif isinstance(param, TyperArgument):
            param.metavar = param.metavar or (param.name or "value").upper()
            param.__class__ = _PlainArgument
    for subcommand in getattr(command, "commands", {}).values():
        plain_help(subcommand)


def _option_metavar(option: TyperOption) -> str:
    if option.metavar is not None:
        return option.metavar
    if option.is_flag or option.count:
        return ""
    described = option.type_descriptor
    if described.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in described.choices or ())
    if described.is_path:
        info = described.parameter_info
        if not getattr(info, "dir_okay", True):
            return "FILE"
        if not getattr(info, "file_okay", True):
            return "DIR"
        return "PATH"
    longest = max(option.opts, key=len)
    return _BY_OPTION.get(longest) or longest.lstrip("-").replace("-", "_").upper()
