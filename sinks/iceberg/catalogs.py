"""Open the Iceberg catalog named by ``IcebergSinkConfig.catalog`` and name the tables in it.

Catalogs (the properties are pyiceberg's, passed through as they are):

- ``type: sql`` with ``uri: sqlite:///state/catalog.db``: the embedded default. A relative SQLite
  path and a relative ``warehouse`` (a plain path or ``file://relative/dir``) are resolved against the
  working directory, so the daemon, the CLI and maintenance, started from the same directory, see
  the same tables; the directories are created.
- ``type: sql`` with ``uri: postgresql+psycopg://user:pw@host/db``: a shared SQL catalog (SQLAlchemy
  URL; the psycopg driver is a Headwater dependency).
- ``type: rest`` with ``uri: https://...`` (plus ``credential``, ``token``, ``warehouse``...):
  configured only, never exercised by Headwater's tests.

Object storage: data files are read and written through pyiceberg's FileIO, which uses pyarrow
filesystems for ``s3://``, ``gs://``, ``abfs://`` and ``hdfs://`` warehouses; their properties
(``s3.endpoint``, ``s3.access-key-id``, ``s3.region``, ``gcs.*``, ``adls.*``, ``py-io-impl``...) go in
the same ``catalog`` mapping and are passed through untouched.

An optional ``name`` property is the catalog's name (the ``catalog_name`` column of a SQL catalog);
it defaults to ``headwater`` and must stay the same for the life of the catalog.

Table names: a source table ``db.t`` is kept in ``<namespace>.t__history``. When another database of
the same pipeline (or another pipeline in the same namespace) already owns that name, the table goes
to ``<namespace>.db__t__history``. Ownership is the table property ``headwater.source`` (``db.t``),
so the choice is stable across restarts and readers resolve it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError
from pyiceberg.table import Table
from sqlalchemy.exc import DatabaseError

from cdc.core.schemas import TableRef
from sinks.iceberg.history_schema import SOURCE_PROPERTY

__all__ = [
    "DEFAULT_CATALOG_NAME",
    "create_or_load_table",
    "ensure_namespace",
    "find_history_table",
    "history_identifiers",
    "open_catalog",
    "progress_identifier",
    "resolve_catalog_properties",
]

DEFAULT_CATALOG_NAME = "headwater"
HISTORY_SUFFIX = "__history"


def resolve_catalog_properties(properties: Mapping[str, str], base: Path | None = None) -> dict[str, str]:
    """pyiceberg properties with local paths made absolute (and without our ``name`` key)."""
    base = (base or Path.cwd()).resolve()
    props = {k: v for k, v in properties.items() if k != "name"}
    if props.get("type") == "sql":
        uri = props.get("uri", "")
        prefix = "sqlite:///"
        if uri.startswith(prefix) and uri != "sqlite:///:memory:":
            path = Path(uri[len(prefix) :])
            if not path.is_absolute():
                path = base / path
            path.parent.mkdir(parents=True, exist_ok=True)
            props["uri"] = prefix + str(path)
    warehouse = props.get("warehouse")
    if warehouse is not None:
        local = _local_warehouse(warehouse, base)
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            props["warehouse"] = local.as_uri()
    return props


def _local_warehouse(warehouse: str, base: Path) -> Path | None:
    parts = urlsplit(warehouse)
    if parts.scheme == "file":
        # "file:///abs" has an empty netloc; "file://state/wh" is a relative path, not a host
        path = Path(parts.netloc + parts.path) if parts.netloc else Path(parts.path)
    elif parts.scheme == "" or (len(parts.scheme) == 1 and warehouse[1:2] == ":"):  # plain or C:\ path
        path = Path(warehouse)
    else:
        return None  # object storage: passed through
    return path if path.is_absolute() else base / path


def open_catalog(properties: Mapping[str, str], base: Path | None = None) -> Catalog:
    """The catalog; several processes may open a new SQL catalog at once.

    pyiceberg's SQL catalog creates its own tables when it first opens a database; two sink
    processes doing so at the same moment make one of them fail with "table ... already exists".
    The loser opens again and finds the tables made.
    """
    name = properties.get("name", DEFAULT_CATALOG_NAME)
    resolved = resolve_catalog_properties(properties, base)
    for attempt in range(5):
        try:
            return load_catalog(name, **resolved)
        except DatabaseError as exc:
            if attempt == 4 or "already exists" not in str(exc):
                raise
    raise AssertionError("unreachable")


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create ``namespace`` unless it exists (another process may be creating it at this moment)."""
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    except DatabaseError:  # the SQL catalog's unique constraint, when the other process won
        if not catalog.namespace_exists(namespace):
            raise


def create_or_load_table(catalog: Catalog, identifier: str, schema: Any, **kwargs: Any) -> Table:
    """Create ``identifier``, or load it when another process created it first."""
    try:
        return catalog.create_table(identifier, schema, **kwargs)
    except TableAlreadyExistsError:
        return catalog.load_table(identifier)


def history_identifiers(namespace: str, ref: TableRef) -> tuple[str, str]:
    """The short and the db-qualified identifier a source table's history may live under."""
    return (
        f"{namespace}.{ref.table}{HISTORY_SUFFIX}",
        f"{namespace}.{ref.db}__{ref.table}{HISTORY_SUFFIX}",
    )


def progress_identifier(namespace: str, pipeline: str) -> str:
    return f"{namespace}._headwater_progress__{pipeline}"


def find_history_table(catalog: Catalog, namespace: str, ref: TableRef) -> tuple[str, Table | None]:
    """The identifier for ``ref``'s history and the table if it exists.

    The short name is used unless a table of another source already holds it.
    """
    short, qualified = history_identifiers(namespace, ref)
    try:
        table = catalog.load_table(short)
    except NoSuchTableError:
        table = None
    if table is not None:
        owner = table.properties.get(SOURCE_PROPERTY)
        if owner == str(ref):
            return short, table
    else:
        # the short name is free, unless this source was put under the qualified name earlier
        try:
            return qualified, catalog.load_table(qualified)
        except NoSuchTableError:
            return short, None
    try:
        return qualified, catalog.load_table(qualified)
    except NoSuchTableError:
        return qualified, None
