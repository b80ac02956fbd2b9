"""START when a daemon starts, RUNNING every ``running_interval_seconds``, COMPLETE or FAIL when it ends.

One run id per process; the job is ``<pipeline>.run`` (capture, or embedded capture and apply) or
``<pipeline>.sink``. The datasets are read again for each event (captured tables and their latest
schema versions), so a table that appears while the daemon runs shows up in the next RUNNING event.
Lineage never stops a daemon: a transport that fails is logged (WARNING) and the daemon goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    ownership_job,
    processing_engine_run,
)
from openlineage.client.uuid import generate_new_uuid

from cdc import __version__
from cdc.config.models import (
    FileLineageTransport,
    HttpLineageTransport,
    KafkaLineageTransport,
    PipelineConfig,
)
from cdc.core.schemas import TableRef, TableSchema
from cdc.lineage.datasets import pipeline_datasets

__all__ = ["PRODUCER", "LineageRun", "make_client"]

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/headwater-cdc/headwater"


def make_client(config: PipelineConfig) -> OpenLineageClient:
    """The client for the config's transport (``lineage.transport``)."""
    assert config.lineage is not None
    transport = config.lineage.transport
    settings: dict[str, Any]
    if isinstance(transport, FileLineageTransport):
        transport.path.parent.mkdir(parents=True, exist_ok=True)
        settings = {"type": "file", "log_file_path": str(transport.path), "append": True}
    elif isinstance(transport, HttpLineageTransport):
        settings = {
            "type": "http",
            "url": transport.url,
            "endpoint": transport.endpoint,
            "timeout": transport.timeout_seconds,
        }
        if transport.api_key is not None:
            settings["auth"] = {"type": "api_key", "apiKey": transport.api_key.get_secret_value()}
    elif isinstance(transport, KafkaLineageTransport):
        settings = {
            "type": "kafka",
            "topic": transport.topic,
            "config": {"bootstrap.servers": transport.bootstrap_servers, **transport.properties},
            "flush": True,
        }
    return OpenLineageClient(config={"transport": settings})


class LineageRun:
    """The lineage of one daemon process: `start()`, then `finish(exit_code, error)`."""

    def __init__(self, config: PipelineConfig, command: str, client: OpenLineageClient | None = None) -> None:
        assert config.lineage is not None
        self._config = config
        self._command = command
        self._client = client or make_client(config)
        self._run_id = str(generate_new_uuid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def run_id(self) -> str:
        return self._run_id

    def start(self) -> None:
        self._emit(RunState.START)
        assert self._config.lineage is not None
        every = self._config.lineage.running_interval_seconds
        self._thread = threading.Thread(target=self._running, args=(every,), name="lineage", daemon=True)
        self._thread.start()

    def _running(self, every: float) -> None:
        while not self._stop.wait(every):
            self._emit(RunState.RUNNING)

    def finish(self, exit_code: int, error: str | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if exit_code == 0:
            self._emit(RunState.COMPLETE)
        else:
            self._emit(RunState.FAIL, error or f"exit {exit_code}")

    def _emit(self, state: RunState, error: str | None = None) -> None:
        try:
            self._client.emit(self.event(state, error))
        except Exception as exc:  # noqa: BLE001 - lineage must never stop the daemon
            log.warning("OpenLineage %s event not sent (%s): %s", state.value, type(exc).__name__, exc)

    def event(self, state: RunState, error: str | None = None) -> RunEvent:
        config = self._config
        assert config.lineage is not None
        run_facets: dict[str, Any] = {
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__, name="Headwater", openlineageAdapterVersion=__version__
            )
        }
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="PYTHON"
            )
        job_facets: dict[str, Any] = {
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="STREAMING", integration="HEADWATER", jobType="CDC"
            )
        }
        owner = config.catalog.owner if config.catalog is not None else None
        if owner is not None:
            job_facets["ownership"] = ownership_job.OwnershipJobFacet(
                owners=[ownership_job.Owner(name=f"team:{owner.team}", type="MAINTAINER")]
            )
        datasets = pipeline_datasets(config, _tables(config), self._command)
        return RunEvent(
            eventType=state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=self._run_id, facets=run_facets),
            job=Job(
                namespace=config.lineage.namespace, name=f"{config.name}.{self._command}", facets=job_facets
            ),
            inputs=list(datasets.inputs),
            outputs=list(datasets.outputs),
            producer=PRODUCER,
        )


def _tables(config: PipelineConfig) -> dict[TableRef, TableSchema | None]:
    """The captured tables with their latest known version (schema versions; the source's list)."""
    from cdc.catalog.schema_history import read_versions

    found: dict[TableRef, TableSchema | None] = {}
    versions, _ = read_versions(config)
    for table in versions.values():
        passed = [v for v in table.versions if not v.held]
        if passed:
            found[passed[-1].schema.ref] = passed[-1].schema
    try:
        from cdc.daemon.mariadb_source import connection_settings
        from cdc.sources.mariadb.server_position import captured_tables

        source = config.source
        for name in captured_tables(
            connection_settings(source), tuple(source.tables), tuple(source.exclude_tables)
        ):
            ref = TableRef(*name.split(".", 1))
            found.setdefault(ref, None)
    except Exception as exc:  # noqa: BLE001 - the source down: the tables known so far are shown
        log.debug("lineage: captured tables not read: %s", exc)
    return found
