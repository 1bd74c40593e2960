from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in one record of a batch: where it is and what to change."""

    index: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


class ValidationFailed(Exception):
    """A batch was rejected whole; ``errors`` lists every problem found."""

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
