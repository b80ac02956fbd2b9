"""The `shop.items` table the Kafka writer tests capture: an INT key and a VARCHAR."""

from __future__ import annotations

from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

__all__ = ["SHOP_ITEMS"]

SHOP_ITEMS = TableSchema.build(
    TableRef("shop", "items"),
    (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        Column("name", "varchar", ArrowType(ArrowKind.STRING)),
    ),
    ("id",),
)
