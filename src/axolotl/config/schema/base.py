"""The base every config model inherits: unknown keys are errors, never silently dropped."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class ConfigModel(BaseModel):
    """Strict by design: a misspelt key that is quietly ignored is the most expensive bug a
    fine-tuning config can have (the run "works", with the wrong settings)."""

    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        arbitrary_types_allowed=False,
        protected_namespaces=(),
        use_attribute_docstrings=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic would read `true` as 1 for a number; in a config that is always a mistake."""
        if not isinstance(value, bool) or not info.field_name:
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if not _admits_bool(annotation):
            wanted = "a number" if _mentions(annotation, (int, float)) else "text"
            raise ValueError(f"expected {wanted}, not true/false")
        return value

    def explicitly_set(self, name: str) -> bool:
        """Whether the user wrote this key (as opposed to it holding its default)."""
        return name in self.model_fields_set

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data for printing/saving the resolved config, YAML aliases as key names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type accepts a YAML boolean (bool, Any, Literal[True], or a union with one)."""
    origin = typing.get_origin(annotation)
    if annotation in (bool, Any) or annotation is object:
        return True
    if annotation is type(None):
        return False
    if origin is typing.Annotated:
        return _admits_bool(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_admits_bool(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(annotation))
    if origin in (list, tuple, set, frozenset, dict):
        return False  # so `int | list[int]` does not read `true` as 1
    return not _is_scalar(annotation)


def _is_scalar(annotation: Any) -> bool:
    return annotation in (int, float, str) or (isinstance(annotation, type) and issubclass(annotation, (int, float, str)))


def _mentions(annotation: Any, kinds: tuple[type, ...]) -> bool:
    if annotation in kinds:
        return True
    return any(_mentions(arg, kinds) for arg in typing.get_args(annotation))
