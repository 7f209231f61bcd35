"""A small JSON-over-HTTP helper for the layer's stores and the experiments' proxy.

Standard library only.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from infra_lib.errors import ConfigError, ServiceUnavailable

__all__ = ["NotFound", "request"]


class NotFound(ServiceUnavailable):
    """The server answered 404: it runs, but has no such object (yet)."""


def request(
    url: str,
    *,
    service: str,
    what: str,
    timeout: float,
    form: dict[str, str] | None = None,
    json_body: bytes | None = None,
    method: str | None = None,
    down_hint: str = (
        "is the observability layer up? `inv up --with observability` starts it, "
        "`inv status` shows it"
    ),
) -> bytes:
    """GET ``url``, or POST ``form`` (urlencoded) or ``json_body``; the body of a 2xx answer.

    ``method`` overrides the verb (e.g. DELETE). Raises :class:`NotFound` for a
    404 and :class:`ServiceUnavailable` for any other failure, naming ``what``
    (e.g. "the log store at http://..."); ``down_hint`` follows when nothing
    answers at all.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{what}: URL {url!r} is not http(s)")
    data: bytes | None = None
    headers: dict[str, str] = {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif json_body is not None:
        data = json_body
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()[:300]
        cls = NotFound if exc.code == 404 else ServiceUnavailable
        raise cls(f"{what} answered {exc.code}: {detail}", service=service) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(
            f"{what} does not answer ({exc}); {down_hint}",
            service=service,
        ) from exc
