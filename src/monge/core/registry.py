"""Registries: one per kind of interchangeable part (paths, couplings, solvers, time grids, ...).

A registry maps a name (and its aliases) to a factory plus a one-line description. The config
schema validates names against it, ``monge run --help`` lists its names, and the docs tables are
rendered from it (:meth:`Registry.markdown_table`), so the three can never drift apart. An unknown
name raises one :class:`~monge.errors.InputError` listing the valid names.

Example:
    >>> from monge.core.registry import Registry
    >>> colours = Registry("colour")
    >>> @colours.register("red", description="the first one")
    ... def make_red():
    ...     return "#f00"
    >>> colours.build("red")
    '#f00'
    >>> colours.names()
    ('red',)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from monge.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered part: its name, factory, description and any extra facts (e.g. order)."""

    name: str
    factory: Callable[..., T]
    description: str = ""
    aliases: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name → factory table for one kind of part.

    Args:
        kind: what the registry holds, singular (used in error messages: ``solver: unknown ...``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, *,
                 description: str = "", aliases: tuple[str, ...] = (), **info: Any):
        """Register ``factory`` under ``name`` (usable as a decorator when ``factory`` is None)."""
        def add(f: Callable[..., T]) -> Callable[..., T]:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} registry: {key!r} is already registered")
            doc = description or ((f.__doc__ or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, f, doc, tuple(aliases), dict(info))
            for alias in aliases:
                self._aliases[alias] = name
            return f
        return add(factory) if factory is not None else add

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (for plugins and tests that register temporarily)."""
        entry = self._entries.pop(self.canonical(name))
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases (error listing the names)."""
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise InputError(f"{self.kind}: unknown name {name!r}; expected one of "
                         f"{', '.join(self.names())}")

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered under ``name`` with ``kwargs``."""
        return self.entry(name).factory(**kwargs)

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order (aliases excluded)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def help_text(self) -> str:
        """The names joined with `` | `` (for CLI help)."""
        return " | ".join(self.names())

    def markdown_table(self, columns: tuple[str, ...] = ()) -> str:
        """A Markdown table: name, aliases, the ``info`` fields in ``columns``, description."""
        head = ["name", "aliases", *columns, "description"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for e in self:
            cells = [f"`{e.name}`", ", ".join(f"`{a}`" for a in e.aliases)]
            cells += [str(e.info.get(c, "")) for c in columns]
            cells.append(e.description.replace("|", "\\|"))
            rows.append("| " + " | ".join(cells) + " |")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.names())})"
