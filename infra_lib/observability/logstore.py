"""The log store (VictoriaLogs): LogsQL queries over its HTTP API.

Container logs carry ``compose.service``, ``compose.project`` and
``container.name`` (and ``service.name``) as stream fields, so
``{compose.service="redis"}`` selects one service's lines; see
docs/observability.md for the query language.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from infra_lib.errors import ServiceUnavailable
from infra_lib.observability.http import request
from infra_lib.stack.settings import StackSettings

__all__ = ["LogStore", "format_record", "search_query", "stream_filter"]


def stream_filter(fields: Mapping[str, str]) -> str:
    """A LogsQL stream filter, ``{compose.service="redis",...}``, values quoted for LogsQL."""
    return "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in fields.items()) + "}"


def search_query(query: str, *, project: str | None = None, service: str | None = None) -> str:
    """``query`` (LogsQL) narrowed to a compose project and service, newest first.

    ``inv logs --query`` uses it: ``project`` keeps other stacks' containers
    out (the collector reads every container on the engine).
    """
    fields = {}
    if project is not None:
        fields["compose.project"] = project
    if service is not None:
        fields["compose.service"] = service
    prefix = f"{stream_filter(fields)} " if fields else ""
    return f"{prefix}({query}) | sort by (_time desc)"


def format_record(record: Mapping[str, Any]) -> str:
    """One record as ``time service | message`` for a terminal."""
    where = record.get("container.name") or record.get("service.name") or "-"
    return f"{record.get('_time', '-')} {where} | {record.get('_msg', '')}"


class LogStore:
    """A VictoriaLogs server at ``base_url``."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_stack(cls, settings: StackSettings) -> LogStore:
        """The compose stack's log store as seen from this host."""
        return cls(f"http://{settings.url_host}:{settings.logs_port}")

    def query(self, logsql: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The newest matching records (``/select/logsql/query``), one dict per line."""
        body = request(
            f"{self.base_url}/select/logsql/query",
            service="victorialogs",
            what=f"the log store at {self.base_url}",
            timeout=self.timeout,
            form={"query": logsql, "limit": str(limit)},
        )
        records = []
        for line in body.decode(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ServiceUnavailable(
                    f"the log store at {self.base_url} sent a line that is not JSON: {line[:200]}",
                    service="victorialogs",
                ) from exc
            records.append(record)
        return records

    def wait_for(
        self, logsql: str, *, timeout: float = 30.0, interval: float = 0.5
    ) -> list[dict[str, Any]]:
        """Poll :meth:`query` until it returns records; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.query(logsql)
            if records:
                return records
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"no log record matched {logsql!r} in the log store at {self.base_url} "
                    f"within {timeout:.0f} s; is the collector (otelcol) running and reading "
                    "the engine's container logs?",
                    service="victorialogs",
                )
            time.sleep(interval)
