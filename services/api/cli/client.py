"""A small HTTP client of the api for the commands (standard library only, synchronous).

The api is at ``GPUFLEET_API_URL`` (default http://127.0.0.1:8080) and the bearer token, when
one is needed, in ``GPUFLEET_API_TOKEN``; both can be given as flags.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """The api answered with an error, or could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("GPUFLEET_API_URL", DEFAULT_URL),
                        help="the api (GPUFLEET_API_URL, default %(default)s)")
    parser.add_argument("--token", default=os.environ.get("GPUFLEET_API_TOKEN"),
                        help="bearer token (GPUFLEET_API_TOKEN)")


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        return cls(args.url, args.token)

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, Any] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, _message(e.read())) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(0, f"cannot reach the api at {self.url}: {reason}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body=body)


def _message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    if isinstance(body, dict) and "error" in body:
        field = f" (field: {body['field']})" if body.get("field") else ""
        return f"{body['error']}{field}"
    return str(body)[:200]


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain text table, columns padded to their widest cell."""
    all_rows = [header, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows)
