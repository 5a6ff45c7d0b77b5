"""A completion's answers from Isograd: acts 10, 4, 5 and 6, asked side by side in a pool."""

from __future__ import annotations

import contextvars
from concurrent.futures import Executor, Future
from typing import Protocol

from worker.isograd.errors import NotAnAssessmentError
from worker.isograd.models import AssessmentResult, AssessmentStatus, ResultDetails
from worker.storage.records import Invitation


class AssessmentSource(Protocol):
    """The Isograd actions the completion needs (worker.isograd.IsogradClient has them)."""

    def get_test_status(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> AssessmentStatus: ...

    def get_result(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentResult: ...

    def get_result_details(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> ResultDetails: ...

    def get_pdf_url(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> str: ...


class ResultFetch:
    """Acts 10, 4, 5 and 6 for one invitation. Started in a pool (`start_status`,
    `start_results`), they run there side by side; not started, `status` and `get` ask them in
    the calling thread, one after another. Each pool task runs in a copy of the starting
    context, so its log lines keep the job's correlation id."""

    def __init__(self, client: AssessmentSource, invitation: Invitation, pla_tst_id: int) -> None:
        self._client = client
        self._invitation = invitation
        self._pla_tst_id = pla_tst_id
        self._status: Future[AssessmentStatus] | None = None
        self._asked: (
            tuple[Future[AssessmentResult], Future[ResultDetails], Future[str | None]] | None
        ) = None

    def start_status(self, pool: Executor) -> None:
        """Start act 10 in `pool`."""
        if self._status is None:
            self._status = pool.submit(contextvars.copy_context().run, self._test_status)

    def start_results(self, pool: Executor | None) -> None:
        """Start acts 4, 5 and 6 in `pool` (once; without a pool, `get` asks them)."""
        if pool is not None and self._asked is None:
            self._asked = (
                pool.submit(contextvars.copy_context().run, self._result),
                pool.submit(contextvars.copy_context().run, self._details),
                pool.submit(contextvars.copy_context().run, self._pdf_url),
            )

    def status(self) -> AssessmentStatus:
        """Act 10's answer, its error raised."""
        if self._status is None:
            return self._test_status()
        return self._status.result()

    def get(self) -> tuple[AssessmentResult, ResultDetails, str | None]:
        """The three answers; their errors are raised in the order 4, 5, 6, as if they had run
        one after another."""
        if self._asked is None:
            return self._result(), self._details(), self._pdf_url()
        self.wait()
        result, details, pdf_url = self._asked
        return result.result(), details.result(), pdf_url.result()

    def wait(self) -> None:
        """Until every started act has answered or failed (their errors are not raised)."""
        for future in (*((self._status,) if self._status else ()), *(self._asked or ())):
            future.exception()

    def _test_status(self) -> AssessmentStatus:
        return self._client.get_test_status(
            self._pla_tst_id, sub_com_id=self._invitation.sub_com_id
        )

    def _email(self) -> str:
        email = self._invitation.email
        if email is None:  # checked by the caller before starting
            raise AssertionError("acts 4, 5 and 6 need the candidate's email")
        return email

    def _result(self) -> AssessmentResult:
        invitation = self._invitation
        return self._client.get_result(
            invitation.tst_frm_id,
            self._email(),
            self._pla_tst_id,
            sub_com_id=invitation.sub_com_id,
        )

    def _details(self) -> ResultDetails:
        invitation = self._invitation
        return self._client.get_result_details(
            invitation.tst_frm_id,
            self._email(),
            self._pla_tst_id,
            sub_com_id=invitation.sub_com_id,
        )

    def _pdf_url(self) -> str | None:
        return _pdf_url(self._client, self._invitation, self._email(), self._pla_tst_id)


def _pdf_url(
    client: AssessmentSource, invitation: Invitation, email: str, pla_tst_id: int
) -> str | None:
    try:
        return client.get_pdf_url(
            invitation.tst_frm_id, email, pla_tst_id, sub_com_id=invitation.sub_com_id
        )
    except NotAnAssessmentError:
        # Act 6 error 601: only assessments have a PDF report; the event says so with null.
        return None
