"""The channel from `cdc bootstrap` to a running daemon: request files in the state directory.

`cdc bootstrap` writes ``<state_dir>/bootstrap-requests-<pipeline>/<id>.json`` (atomically: a crash
leaves the whole file or none). The daemon looks at the directory about once a second, queues the
tables of each new request, and removes the file once the request is finished *and* that is
committed; a request read but not yet committed stays, so a daemon that dies meanwhile takes it up
again at its next start. Files need no Kafka topic and no write to the source database, and work the
same in both modes; `cdc bootstrap` and the daemon run on the same host (the daemon's state_dir).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cdc.core.events import RowImage
from cdc.core.schemas import TableRef
from snapshotter.state import decode_key, encode_key

log = logging.getLogger("cdc.bootstrap")

__all__ = ["BootstrapRequest", "RequestBox"]


@dataclass(frozen=True, slots=True)
class BootstrapRequest:
    id: str
    tables: tuple[TableRef, ...]
    created_at: str
    replace: bool = False  # truncate each table's copies before its first chunk
    # a repair (`cdc reconcile --repair`): per table, the keys to read again and send
    keys: Mapping[TableRef, tuple[RowImage, ...]] | None = None


class RequestBox:
    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.directory = Path(state_dir) / f"bootstrap-requests-{pipeline}"

    def submit(
        self,
        tables: tuple[TableRef, ...],
        *,
        replace: bool = False,
        keys: Mapping[TableRef, tuple[RowImage, ...]] | None = None,
    ) -> BootstrapRequest:
        now = dt.datetime.now(dt.UTC)
        prefix = "repair-" if keys is not None else ""
        request = BootstrapRequest(
            f"{prefix}{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            tables,
            now.isoformat(timespec="seconds"),
            replace,
            keys,
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        body = orjson.dumps(
            {
                "id": request.id,
                "tables": [str(t) for t in tables],
                "created_at": request.created_at,
                "replace": replace,
                **(
                    {}
                    if keys is None
                    else {"keys": {str(t): [encode_key(k) for k in keys[t]] for t in tables}}
                ),
            }
        )
        path = self.directory / f"{request.id}.json"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        return request

    def pending(self) -> list[BootstrapRequest]:
        """Requests not yet removed, oldest first; an unreadable file is reported and skipped."""
        if not self.directory.is_dir():
            return []
        found: list[BootstrapRequest] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data: Any = orjson.loads(path.read_bytes())
                tables = tuple(TableRef(*str(t).split(".", 1)) for t in data["tables"])
                keys = data.get("keys")
                found.append(
                    BootstrapRequest(
                        str(data["id"]),
                        tables,
                        str(data["created_at"]),
                        bool(data["replace"]),
                        None
                        if keys is None
                        else {t: tuple(decode_key(k) for k in keys[str(t)]) for t in tables},
                    )
                )
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring the unreadable bootstrap request %s: %s", path, exc)
        return found

    def remove(self, request_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{request_id}.json").unlink()
