"""Isograd's documented error answers (`error_code` and `error_message`) as the simulator gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Failure:
    """One documented error: its code and the reference's message text."""

    code: int
    message: str


# Texts copied from the reference (../shared/isograd-api.txt); the same code sometimes has a
# different text depending on the action (106/107/501), so each variant is its own constant.
ACT_ID_NOT_VALID = Failure(103, "The property act_id is not valid")
CANDIDATE_NOT_CREATED = Failure(
    201, "The candidate could not be created (probably because one of the parameters is not valid)"
)
CANDIDATE_ALREADY_EXISTS = Failure(
    202, "There is already a candidate with this email on your account."
)
GROUP_NOT_FOUND = Failure(
    203, "Couldn't find the mentioned dep_id in the account and can't create candidate"
)
TEST_NOT_ALLOWED = Failure(106, "This tst_frm_id is not allowed")
CANDIDATE_NOT_FOUND = Failure(107, "This candidate does not exist")
NO_CREDITS = Failure(301, "You have no more credits for this type of test")
MAX_TESTS_TAKEN = Failure(402, "The candidate has already taken max_num_tst for this tst_frm_id")
NO_PROCTORING_CREDITS = Failure(303, "You have no proctoring credit left")
TEST_STARTED_OR_MISSING = Failure(304, "The test is already started or does not exist")
RESULT_TEST_NOT_ALLOWED = Failure(106, "This value for tst_frm_id is not authorized")
RESULT_CANDIDATE_NOT_FOUND = Failure(107, "Candidate does not exist")
TEST_NOT_TAKEN = Failure(501, "Candidate has not taken this test")
TEST_NOT_FINISHED = Failure(502, "Test is not finished")
NOT_AN_ASSESSMENT = Failure(601, "Test must be an assessment")
UNKNOWN_PLA_TST_ID = Failure(501, "This pla_tst_id does not exist")


def missing_property(name: str) -> Failure:
    """Error 105. The reference prints curly quotes (a word processor's); we send straight ones."""
    return Failure(105, f'Property "{name}" is requested')


class ActionError(Exception):
    """An action failed with a documented error; `extra` are added to the JSON (202's can_id)."""

    def __init__(self, failure: Failure, **extra: Any) -> None:
        self.failure = failure
        self.extra = extra
        super().__init__(f"{failure.code} {failure.message}")

    def as_json(self) -> dict[str, Any]:
        return {
            "success": False,
            "error_code": self.failure.code,
            "error_message": self.failure.message,
            **self.extra,
        }
