"""Isograd's documented error codes, one exception class each.

    IsogradApiError (worker.errors)        success=false with an undocumented error_code
    ├── InvalidActionError           103   the property act_id is not valid
    ├── MissingParameterError        105   a required property is missing
    ├── AssessmentNotAllowedError    106   this tst_frm_id is not allowed on the account
    ├── CandidateNotFoundError       107   the candidate does not exist
    ├── CandidateNotCreatedError     201   the candidate could not be created (invalid parameter)
    ├── CandidateExistsError         202   a candidate with this email exists (`can_id` is given)
    ├── GroupNotFoundError           203   the dep_id is not in the account
    ├── NoCreditsError               301   no credits left for this type of test
    ├── NoProctoringCreditsError     303   no proctoring credit left
    ├── AssessmentNotDeletableError  304   the test is already started or does not exist
    ├── MaxAttemptsReachedError      402   the candidate has taken max_num_tst tests already
    ├── AssessmentNotFoundError      501   act 10: no such pla_tst_id; acts 4/5/6: not taken
    ├── AssessmentNotFinishedError   502   the test is not finished
    └── NotAnAssessmentError         601   the test must be an assessment

IsogradAuthError (a PermanentError) is the token endpoint refusing our client credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from worker.errors import IsogradApiError, PermanentError


class IsogradAuthError(PermanentError):
    """The token endpoint (or the API, twice in a row) refused our client credentials."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class DocumentedIsogradError(IsogradApiError):
    """Base of the classes for the error codes the reference documents."""

    error_code: ClassVar[int]

    def __init__(self, message: str = "", *, action: int | None = None) -> None:
        super().__init__(self.error_code, message, action=action)


class InvalidActionError(DocumentedIsogradError):
    error_code = 103


class MissingParameterError(DocumentedIsogradError):
    error_code = 105


class AssessmentNotAllowedError(DocumentedIsogradError):
    error_code = 106


class CandidateNotFoundError(DocumentedIsogradError):
    error_code = 107


class CandidateNotCreatedError(DocumentedIsogradError):
    error_code = 201


class CandidateExistsError(DocumentedIsogradError):
    """202: `can_id` is the existing candidate's id (None if Isograd left it out)."""

    error_code = 202

    def __init__(
        self, message: str = "", *, action: int | None = None, can_id: int | None = None
    ) -> None:
        self.can_id = can_id
        super().__init__(message, action=action)


class GroupNotFoundError(DocumentedIsogradError):
    error_code = 203


class NoCreditsError(DocumentedIsogradError):
    error_code = 301


class NoProctoringCreditsError(DocumentedIsogradError):
    error_code = 303


class AssessmentNotDeletableError(DocumentedIsogradError):
    error_code = 304


class MaxAttemptsReachedError(DocumentedIsogradError):
    error_code = 402


class AssessmentNotFoundError(DocumentedIsogradError):
    """501: for act 10 the pla_tst_id does not exist; for acts 4, 5, 6 the test was not taken."""

    error_code = 501


class AssessmentNotFinishedError(DocumentedIsogradError):
    error_code = 502


class NotAnAssessmentError(DocumentedIsogradError):
    error_code = 601


ERROR_CLASSES: Mapping[int, type[DocumentedIsogradError]] = {
    cls.error_code: cls
    for cls in (
        InvalidActionError,
        MissingParameterError,
        AssessmentNotAllowedError,
        CandidateNotFoundError,
        CandidateNotCreatedError,
        CandidateExistsError,
        GroupNotFoundError,
        NoCreditsError,
        NoProctoringCreditsError,
        AssessmentNotDeletableError,
        MaxAttemptsReachedError,
        AssessmentNotFoundError,
        AssessmentNotFinishedError,
        NotAnAssessmentError,
    )
}


def _optional_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def error_for_code(
    code: int | None, message: str, action: int | None, payload: Mapping[str, Any]
) -> IsogradApiError:
    """The exception for a `success: false` answer; IsogradApiError itself for unknown codes."""
    cls = ERROR_CLASSES.get(code) if code is not None else None
    if cls is None:
        return IsogradApiError(code, message, action=action)
    if cls is CandidateExistsError:
        return CandidateExistsError(
            message, action=action, can_id=_optional_int(payload.get("can_id"))
        )
    return cls(message, action=action)
