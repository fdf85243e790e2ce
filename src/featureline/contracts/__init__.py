"""Data contracts at runtime: checks compiled from a contract, run over JSON bytes or Arrow batches.

from featureline.contracts import ContractValidator
result = ContractValidator(plan.contracts["transactions"]).validate_json(messages)
result.valid        # pyarrow Table of the valid rows, contract schema
result.invalid      # [InvalidRow(index, raw, reasons=(Reason(field, rule, value, message), ...))]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import InvalidRow, Reason, ValidationResult
    from .validator import ContractValidator

__all__ = ["ContractValidator", "InvalidRow", "Reason", "ValidationResult"]


def __getattr__(name: str):
    if name == "ContractValidator":
        from .validator import ContractValidator

        return ContractValidator
    if name in ("InvalidRow", "Reason", "ValidationResult"):
        from . import result

        return getattr(result, name)
    raise AttributeError(name)
