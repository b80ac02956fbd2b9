"""`--log-format json`: one JSON object per line, with secrets masked in messages and tracebacks."""

from __future__ import annotations

import io
import json
import logging

from cdc.logs import JsonFormatter, RedactingFilter, register_secrets


def test_json_lines_are_redacted() -> None:
    secret = "ops-s3cret-value"
    register_secrets({secret})
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.ops_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting with %s", secret)
        try:
            raise RuntimeError(f"login failed for password {secret}")
        except RuntimeError:
            logger.exception("source down")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "connecting with ***"
    assert first["level"] == "WARNING" and first["logger"] == "tests.ops_json" and first["ts"]
    assert "RuntimeError: login failed for password ***" in second["exception"]
    assert secret not in out.getvalue()
