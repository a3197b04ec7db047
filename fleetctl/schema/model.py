"""Tables and columns as osquery declares them, and the CREATE TABLE that declares them.

One model for every reader of the schema: the embedded engine and the osquery extension
serve tables declared from it, and pack validation compiles queries against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

#: Platforms the schema knows. osquery also builds for FreeBSD, which no table here covers.
PLATFORMS: tuple[str, ...] = ("linux", "darwin", "windows")

#: osquery column type -> SQLite declared type used in CREATE TABLE.
SQLITE_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "unsigned_bigint": "INTEGER",
    "double": "REAL",
    "blob": "BLOB",
}

#: osquery column type -> the type name an extension announces in its column routes.
EXTENSION_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "unsigned_bigint": "UNSIGNED BIGINT",
    "double": "DOUBLE",
    "blob": "BLOB",
}


@dataclass(frozen=True)
class Column:
    """A table column; ``platforms`` set means it exists only on those platforms.

    ``alias_of`` marks the hidden column osquery adds for each of a column's ``aliases``.
    """

    name: str
    type: str = "text"
    description: str = ""
    hidden: bool = False
    index: bool = False
    required: bool = False
    additional: bool = False
    collate: str | None = None
    platforms: frozenset[str] | None = None
    aliases: tuple[str, ...] = ()
    alias_of: str | None = None

    @property
    def sqlite_type(self) -> str:
        return SQLITE_TYPES[self.type]

    def exists_on(self, platform: str | None) -> bool:
        return platform is None or self.platforms is None or platform in self.platforms

    def alias_columns(self) -> tuple[Column, ...]:
        """The hidden column osquery declares for each alias, carrying this column's value."""
        return tuple(
            Column(
                name=alias,
                type=self.type,
                description=f"Alias of {self.name}",
                hidden=True,
                collate=self.collate,
                alias_of=self.name,
            )
            for alias in self.aliases
        )


@dataclass(frozen=True)
class Table:
    """An osquery table (or extension table) and the platforms it exists on.

    ``in_specs`` is false for an entry osquery's current specs lack (a table a release
    still serves, such as ``bpf_process_events``): the engine may serve it, packs may
    not name it.
    """

    name: str
    platforms: frozenset[str]
    columns: tuple[Column, ...]
    aliases: tuple[str, ...] = ()
    extension: bool = False
    description: str = ""
    spec_path: str = ""
    in_specs: bool = True

    def columns_on(self, platform: str | None) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.exists_on(platform))

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name or name in c.aliases), None)

    def declared(self, platform: str) -> tuple[Column, ...]:
        """Columns as osqueryd on ``platform`` declares them, aliases last: a column of
        other platforms still exists there but is hidden, exactly as osquery's
        ``gentable.py`` builds it (``extended_schema``)."""
        columns = tuple(
            c if c.exists_on(platform) else replace(c, hidden=True) for c in self.columns
        )
        return with_aliases(columns)


def with_aliases(columns: Iterable[Column]) -> tuple[Column, ...]:
    """``columns`` followed by the hidden alias columns of each (osquery's order)."""
    listed = tuple(columns)
    return listed + tuple(a for c in listed for a in c.alias_columns())


def column_sql(column: Column) -> str:
    """One column of a CREATE TABLE, with osquery's type mapped to SQLite's."""
    decl = f'"{column.name}" {column.sqlite_type}'
    if column.hidden:
        decl += " HIDDEN"
    if column.collate:
        decl += (
            f" COLLATE {column.collate.upper() if column.collate == 'nocase' else column.collate}"
        )
    return decl


def create_table_sql(name: str, columns: Iterable[Column]) -> str:
    """The schema osquery declares for a table (hidden columns marked HIDDEN)."""
    return f'CREATE TABLE "{name}"({", ".join(column_sql(c) for c in columns)})'
