"""One-line errors for every ``monge`` command (the one place the CLI turns errors into text)."""

from __future__ import annotations

import functools

import typer

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
        except KeyboardInterrupt:
            typer.echo("interrupted: the last checkpoint is kept; rerun with --resume",
                       err=True)
            raise typer.Exit(130) from None
    return wrapper
