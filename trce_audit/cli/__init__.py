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

from .. import __version__
from ..errors import TrceAuditError, one_line
from .common import AppState

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


_SKIP = {"common"}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}").register(app)


def main(argv: list[str] | None = None) -> int:
    try:
        result = app(args=argv, standalone_mode=False)
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
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        # 1 is reserved for "a gate limit was exceeded"; an unexpected failure must not look like one.
        typer.echo(f"error: {type(exc).__name__}: {one_line(exc)}", err=True)
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
