"""Include/exclude patterns for the source's tables: the vocabulary's filter (``cdc.core.table_filter``)."""

from cdc.core.table_filter import TableFilter

__all__ = ["TableFilter"]
