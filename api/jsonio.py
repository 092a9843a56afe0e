"""Flask's JSON in and out through orjson (issue 21: lean JSON on the hot path).

A 400-token batch is ~400 small objects each way; the standard library's encoder
costs several times orjson's for them. Same output contract as Flask's default
provider: keys sorted, UTF-8, dates as ISO 8601 strings (the API emits strings
already), anything else not serialisable is a ``TypeError`` (a bug, never data).
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=_OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(orjson.dumps(obj, option=_OPTIONS) + b"\n", mimetype=self.mimetype)
