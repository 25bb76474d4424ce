"""One-line errors for every ``monge`` command (the one place the CLI turns errors into text)."""

from __future__ import annotations

import errno
import functools
import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors its own click; older versions use click itself
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - depends on the installed typer
    import click.exceptions as _cx

from monge.errors import MongeError


def friendly_errors(fn):
    """Turn MongeError (and interrupted runs) into one line on stderr and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MongeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except FloatingPointError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # a full disk, a vanished folder, a permission change mid-run
            where = f"{exc.filename}: " if exc.filename else ""
            hint = ("; the last complete checkpoint is kept (free space, then rerun with "
                    "--resume)" if exc.errno == errno.ENOSPC else "")
            typer.echo(f"error: {where}{exc.strerror or exc}{hint}", err=True)
            raise typer.Exit(1) from None
        except MemoryError:
            typer.echo("error: out of memory; use fewer samples (--n) or a smaller model",
                       err=True)
            raise typer.Exit(1) from None
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            typer.echo("error: out of memory; use fewer samples (--n) or a smaller model",
                       err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: the last checkpoint is kept; rerun with --resume",
                       err=True)
            raise typer.Exit(130) from None
    return wrapper


class OneLineUsageErrors(TyperGroup):
    """The top-level command group: a command-line usage error (a malformed option value, an
    unknown option, a missing argument) is one ``error:`` line and exit code 2, like every other
    error, instead of click's multi-line box. Asking for nothing prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except _cx.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except _cx.UsageError as exc:
            where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            typer.echo(f"error: {where}{' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except _cx.ClickException as exc:
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, EOFError):
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)
