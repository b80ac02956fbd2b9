"""What `cdc dev demo` adds for issue 12: OpenLineage events to a file, and the catalog page."""

from __future__ import annotations

from pathlib import Path

from cdc.config.models import FileLineageTransport, LineageConfig, PipelineConfig

__all__ = ["with_file_lineage", "write_catalog_page"]


def with_file_lineage(config: PipelineConfig) -> PipelineConfig:
    """The config with a file transport (``<state_dir>/lineage.jsonl``) unless it names a transport."""
    if config.lineage is not None:
        return config
    transport = FileLineageTransport(path=config.state_dir / "lineage.jsonl")
    return config.model_copy(
        update={"lineage": LineageConfig(transport=transport, running_interval_seconds=2.0)}
    )


def event_counts(config: PipelineConfig) -> str:
    """ "START 1, RUNNING 3, COMPLETE 1" from the file transport's file."""
    import json

    if config.lineage is None or not isinstance(config.lineage.transport, FileLineageTransport):
        return "none (not a file transport)"
    counts: dict[str, int] = {}
    path = config.lineage.transport.path
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        kind = str(json.loads(line).get("eventType"))
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "none"


def write_catalog_page(config: PipelineConfig) -> Path:
    """`cdc catalog --html` of this one pipeline, into ``<state_dir>/catalog.html``."""
    from cdc.catalog.collect import collect_pipeline
    from cdc.catalog.html_page import render_html

    path = config.state_dir / "catalog.html"
    path.write_text(render_html((collect_pipeline(config),)), encoding="utf-8")
    return path
