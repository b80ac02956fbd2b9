"""Chunk checksums pushed into each store, bisection to rows, repair through the stream, reports.

Modules (``cdc reconcile`` in ``cdc/reconcile_command.py`` wires them to the config):

- ``canonical``: one canonical text per value, as SQL for each engine (MariaDB, PostgreSQL, SQLite,
  DuckDB over the Iceberg history's Arrow state), chosen by the source column's type;
- ``stores``: a table in one store and the queries pushed into it (bucket checksums, rows);
- ``compare``: bisection over integer-key buckets (or source-key chunks) down to a row diff;
- ``settle``: lag is not drift: suspects re-checked in a consistent source snapshot once the copy
  has passed its binlog point;
- ``targets``: the source table and each copy (SQL serving table, Iceberg history state);
- ``run``: one table against one copy; ``model``: the values (CopyResult, RepairPlan...);
- ``report``: JSON, HTML, the stdout summary, history under ``state_dir/reconcile``, ``last_results``.

``RepairPlan`` lists, per table and copy, the source keys to re-send and the keys to delete;
``cdc reconcile --repair`` (cdc/reconcile_repair.py) sends them through the stream.
"""
