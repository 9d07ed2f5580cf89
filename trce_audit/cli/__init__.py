"""The `trce-audit` command: a thin layer over trce_audit.api.

Each command group lives in its own module in this package and exposes ``register(app)``; modules are
discovered by name, so adding a command touches one file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.main

from .. import __version__
from ..errors import TrceAuditError, one_line
from .common import AppState
from .feedback import install_warning_lines

# Typer vendors click: its usage errors derive from the vendored ClickException (BadParameter's base).
_CLICK_ERRORS = tuple(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")
USAGE_ERROR = 2  # bad input of any kind, as TrceAuditError.exit_code
INTERNAL_ERROR = 3

app = typer.Typer(
    name="trce-audit",
    help="Erase concepts from text-to-image models, attack the result, measure it, report and gate on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trce-audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: Annotated[
        Optional[Path],
        typer.Option("--workspace", envvar="TRCE_AUDIT_HOME", help="Workspace folder [default: ./trce-audit-workspace]."),
    ] = None,
    db: Annotated[
        Optional[str],
        typer.Option("--db", envvar="TRCE_AUDIT_DB", help="SQLAlchemy URL of the result store [default: SQLite in the workspace]."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    ctx.obj = AppState(workspace_dir=workspace, db_url=db)
    ctx.call_on_close(ctx.obj.close)  # the root context closes when the command ends, failed or not


_SKIP = {"common", "executor", "feedback", "groups", "sampling", "tables"}  # helpers, not commands
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}").register(app)


def _name_metavars(command) -> None:
    """Help shows each value as a NAME (``--out OUT``), never the Python type Typer would print (``<path>``)."""
    for param in getattr(command, "params", ()):
        if param.metavar is None and not getattr(param, "is_flag", False):
            param.metavar = (param.name or "value").strip("_").upper()
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: None  # the NAME alone, as for options
    for sub in getattr(command, "commands", {}).values():
        _name_metavars(sub)


def click_command():
    """The click command tree behind ``app`` (also what the docs test parses commands with)."""
    command = typer.main.get_command(app)
    _name_metavars(command)
    return command


def main(argv: list[str] | None = None) -> int:
    install_warning_lines()
    try:
        result = click_command().main(args=argv, prog_name="trce-audit", standalone_mode=False)
    except TrceAuditError as exc:
        typer.echo(f"error: {one_line(exc)}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        return 130
    except Exception as exc:  # click usage errors are handled below; anything else is a bug or bad data
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            # a group named without a subcommand: its help as written, on stderr with exit 2 (click's convention)
            typer.echo(ctx.get_help(), err=True)
            return USAGE_ERROR
        if isinstance(exc, _CLICK_ERRORS):  # missing or malformed option, unknown command: one line, exit 2
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
            return USAGE_ERROR
        # 1 is reserved for "a gate limit was exceeded"; an unexpected failure must not look like one.
        typer.echo(f"error: {type(exc).__name__}: {one_line(exc)}", err=True)
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
