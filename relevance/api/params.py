"""Turn a request's query string into a validated pydantic model, or a RequestError.

Malformed input (missing, unknown or unparsable parameters) is a 400; well-formed
values that break a rule (size above 100, price_min above price_max) are a 422.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from relevance.errors import RequestError

Params = TypeVar("Params", bound=BaseModel)
_MALFORMED = ("missing", "extra_forbidden", "_parsing", "_type")


def _is_list_field(model: type[BaseModel], name: str) -> bool:
    annotation = model.model_fields[name].annotation
    return getattr(annotation, "__origin__", None) is list


def parse_params(model: type[Params], args: MultiDict[str, str]) -> Params:
    values: dict[str, object] = {}
    for name in args:
        given = args.getlist(name)
        if name in model.model_fields and _is_list_field(model, name):
            values[name] = given
        elif len(given) > 1:
            raise RequestError(f"parameter {name!r} is given {len(given)} times; give it once", field=name)
        else:
            values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _request_error(exc) from exc


def _request_error(exc: ValidationError) -> RequestError:
    error = exc.errors()[0]
    # No location: a rule across fields (their validators raise RequestError with the field).
    name = ".".join(str(part) for part in error["loc"] if not isinstance(part, int)) if error["loc"] else None
    kind = error["type"]
    if kind == "extra_forbidden":
        return RequestError(f"unknown parameter {name!r}", field=name)
    if kind == "missing":
        return RequestError(f"parameter {name!r} is required", field=name)
    status = 400 if any(marker in kind for marker in _MALFORMED) else 422
    got = error.get("input")
    detail = f"{name}: {error['msg']}" if name else error["msg"]
    if got is not None and not isinstance(got, dict):
        detail += f" (got {got!r})"
    return RequestError(detail, field=name, status=status)
