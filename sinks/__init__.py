"""Targets: Iceberg history and SQL serving databases, chosen by ``type`` through a lazy registry."""
