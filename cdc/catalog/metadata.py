"""A table's data-product metadata: the pipeline's ``catalog:`` keys, overridden by each matching pattern."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cdc.config.models import CatalogConfig, Compatibility, OnIncompatible, ProductMetadata
from cdc.core.table_filter import TableFilter

__all__ = ["TableProduct", "table_product"]


@dataclass(frozen=True, slots=True)
class TableProduct:
    domain: str | None = None
    owner_team: str | None = None
    owner_contact: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    classification: str | None = None
    freshness_slo_seconds: float | None = None
    compatibility: Compatibility = Compatibility.NONE
    on_incompatible: OnIncompatible = OnIncompatible.STOP
    history_retention_days: float | None = None  # None: the Iceberg history keeps everything

    @property
    def retention(self) -> dt.timedelta | None:
        days = self.history_retention_days
        return None if days is None else dt.timedelta(days=days)

    @property
    def owner(self) -> str | None:
        if self.owner_team is None:
            return None
        return self.owner_team + (f" <{self.owner_contact}>" if self.owner_contact else "")


def table_product(catalog: CatalogConfig | None, db: str, table: str) -> TableProduct:
    if catalog is None:
        return TableProduct()
    layers: list[ProductMetadata] = [catalog]
    layers += [meta for pattern, meta in catalog.tables.items() if TableFilter((pattern,)).accepts(db, table)]
    result = TableProduct()
    for layer in layers:
        # only the keys a layer sets override; a table's `owner` replaces the pipeline's whole
        given = layer.model_fields_set
        owner = layer.owner
        result = TableProduct(
            domain=layer.domain if "domain" in given else result.domain,
            owner_team=owner.team if owner is not None else result.owner_team,
            owner_contact=owner.contact if owner is not None else result.owner_contact,
            description=layer.description if "description" in given else result.description,
            tags=tuple(layer.tags) if "tags" in given else result.tags,
            classification=layer.classification if "classification" in given else result.classification,
            freshness_slo_seconds=(
                layer.freshness_slo_seconds
                if "freshness_slo_seconds" in given
                else result.freshness_slo_seconds
            ),
            compatibility=layer.compatibility or result.compatibility,
            on_incompatible=layer.on_incompatible or result.on_incompatible,
            history_retention_days=(
                layer.history_retention_days
                if "history_retention_days" in given
                else result.history_retention_days
            ),
        )
    return result
