"""The datasets a pipeline reads and writes, named as OpenLineage's naming conventions say, with facets.

Inputs: each captured source table (``mysql://host:port``, ``db.table``: OpenLineage names MariaDB
datasets as MySQL ones). Outputs, per table: its Kafka topic (``kafka://bootstrap``, topic), its
Iceberg history table (the warehouse, ``namespace.table__history``) and its serving table (the
database URL without credentials, the table). Each carries the schema (the table's latest version),
ownership, documentation and datasource facets; outputs add storage and column lineage (every column
copied from the same source column: IDENTITY).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    column_lineage_dataset,
    datasource_dataset,
    documentation_dataset,
    ownership_dataset,
    schema_dataset,
    storage_dataset,
)

from cdc.catalog.metadata import table_product
from cdc.config.models import IcebergSinkConfig, PipelineConfig, SqlSinkConfig
from cdc.core.schemas import Column, TableRef, TableSchema
from cdc.core.table_filter import TableFilter

__all__ = ["PipelineDatasets", "pipeline_datasets"]


@dataclass(frozen=True)
class PipelineDatasets:
    inputs: tuple[InputDataset, ...]
    outputs: tuple[OutputDataset, ...]


def source_namespace(config: PipelineConfig) -> str:
    return f"mysql://{config.source.host}:{config.source.port}"


def pipeline_datasets(
    config: PipelineConfig, tables: dict[TableRef, TableSchema | None], job: str
) -> PipelineDatasets:
    """``job``: "run" (embedded: source tables to sinks; Kafka: source tables to topics) or "sink"
    (Kafka: topics to sinks)."""
    inputs: list[InputDataset] = []
    outputs: list[OutputDataset] = []
    reads_topics = job == "sink"
    writes_sinks = config.stream is None or reads_topics
    for ref, schema in sorted(tables.items(), key=lambda item: str(item[0])):
        common = _common_facets(config, ref, schema)
        if reads_topics:
            [(in_ns, in_name, layer, file_format)] = _copies(config, ref, topics=True, sinks=False)
        else:
            in_ns, in_name, layer, file_format = source_namespace(config), str(ref), "mariadb", None
        facets: dict[str, DatasetFacet] = {
            **common,
            "dataSource": datasource_dataset.DatasourceDatasetFacet(name=in_ns, uri=in_ns),
        }
        if reads_topics:
            facets["storage"] = storage_dataset.StorageDatasetFacet(
                storageLayer=layer, fileFormat=file_format
            )
        inputs.append(InputDataset(in_ns, in_name, facets=facets))
        for namespace, name, layer, file_format in _copies(config, ref, not writes_sinks, writes_sinks):
            facets = {
                **common,
                "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=namespace),
                "storage": storage_dataset.StorageDatasetFacet(storageLayer=layer, fileFormat=file_format),
            }
            if schema is not None:
                facets["columnLineage"] = _column_lineage(in_ns, in_name, schema.columns)
            outputs.append(OutputDataset(namespace, name, facets=facets))
    return PipelineDatasets(tuple(inputs), tuple(outputs))


def _common_facets(
    config: PipelineConfig, ref: TableRef, schema: TableSchema | None
) -> dict[str, DatasetFacet]:
    product = table_product(config.catalog, ref.db, ref.table)
    facets: dict[str, DatasetFacet] = {}
    if schema is not None:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.source_type, ordinal_position=i)
                for i, c in enumerate(schema.columns, 1)
            ]
        )
    if product.owner_team is not None:
        owners = [ownership_dataset.Owner(name=f"team:{product.owner_team}", type="MAINTAINER")]
        facets["ownership"] = ownership_dataset.OwnershipDatasetFacet(owners=owners)
    if product.description:
        facets["documentation"] = documentation_dataset.DocumentationDatasetFacet(
            description=product.description, contentType="text/plain"
        )
    return facets


def _column_lineage(
    namespace: str, name: str, columns: tuple[Column, ...]
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    identity = column_lineage_dataset.Transformation(
        type="DIRECT", subtype="IDENTITY", description="copied as is"
    )
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            c.name: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(namespace, name, c.name, transformations=[identity])
                ]
            )
            for c in columns
        }
    )


def _copies(
    config: PipelineConfig, ref: TableRef, topics: bool, sinks: bool
) -> list[tuple[str, str, str, str | None]]:
    """(namespace, name, storage layer, file format) of each place the table's changes land."""
    out: list[tuple[str, str, str, str | None]] = []
    if topics and config.stream is not None:
        from cdc.stream.topics import TopicNames

        server = config.stream.bootstrap_servers.split(",")[0].strip()
        out.append((f"kafka://{server}", TopicNames(config.name).table(ref), "kafka", "json"))
    if not sinks:
        return out
    for sink in config.sinks:
        if not TableFilter(tuple(sink.tables), tuple(sink.exclude_tables)).accepts(ref.db, ref.table):
            continue
        if isinstance(sink, IcebergSinkConfig):
            from sinks.iceberg.catalogs import history_identifiers

            warehouse = sink.catalog.get("warehouse") or sink.catalog.get("uri", "iceberg")
            out.append(
                (
                    _no_credentials(warehouse),
                    history_identifiers(sink.namespace, ref)[0],
                    "iceberg",
                    "parquet",
                )
            )
        elif isinstance(sink, SqlSinkConfig):
            target = sink.table.format(table=ref.table, db=ref.db)
            name = f"{sink.schema_name}.{target}" if sink.schema_name else target
            out.append((_no_credentials(str(sink.url)), name, "sql", None))
    return out


def _no_credentials(url: str) -> str:
    """scheme://host:port/path without user, password or query (OpenLineage namespaces name places)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg -> postgresql
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{scheme}://{host}{port}{parts.path}"
