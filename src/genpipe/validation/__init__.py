"""The data contract checked before training (Great Expectations lives in `expectations` only)."""

from genpipe.validation.report import DataValidationError, failure_message, validate_prepared

__all__ = ["DataValidationError", "failure_message", "validate_prepared"]
