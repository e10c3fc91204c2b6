"""The first card, end to end over real gRPC against real identity, bank and card services, on
SQLite and PostgreSQL: A3.1 channels, A4.2 one person one card, A5.1 what an application
carries, A6.1 / A6.2 employer batches, A7.1–A7.3 notices and delivery, A8.1 activation,
A18.1 status queries, A22.1 / A22.3 production time, A23.1 no fees, A27.1 generation,
A29.1 the date the rules apply from."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest

from services.platform.auth import Channel, Role
from services.platform.clock import SharedTestClock, beijing_date
from services.platform.documents import gb11643_check_char
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from sscard.bank.v1 import bank_pb2
from sscard.card.v1 import card_pb2 as pb
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2
from tests.cardsuite import (
    BANK,
    BRANCH,
    EMPLOYER_ID,
    INSTANT,
    OTHER_BANK,
    OTHER_INSTANT,
    Suite,
    reason_rule,
    rpc_error,
)
from tests.support import PersonSpec, date_pb, resident_id


def wrong_check_character() -> str:
    """A resident ID number whose GB 11643 check character is not the right one."""
    number = resident_id()
    return number[:17] + next(c for c in "0123456789X" if c != number[17])


def impossible_birth_date() -> str:
    """A resident ID number, right check character included, born on 31 February."""
    first17 = "11010519900231123"
    return first17 + gb11643_check_char(first17)


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, str]:
    decoded = from_rpc_error(error)
    return error.code(), decoded.reason, decoded.rule  # type: ignore[attr-defined]


class TestApplication:
    def test_A5_1_A27_1_an_online_application_reaches_production_as_a_3rd_generation_card(
        self, suite: Suite
    ) -> None:
        person = suite.person()
        started = suite.apply(person)
        assert started.status == pb.CARD_STATUS_APPLIED
        application = suite.settle(started.card_id)
        assert (application.state, application.step) == (pb.SAGA_STATE_COMPLETED, "completed")
        card = suite.get(started.card_id)
        assert card.status == pb.CARD_STATUS_IN_PRODUCTION
        assert card.generation == 3
        assert card.document.number_masked.endswith(person.number[-4:])
        assert person.number not in str(card)
        assert suite.registered_card(person) == started.card_id

    def test_A22_1_a_first_card_is_due_thirty_natural_days_after_the_application(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        started = suite.apply(suite.person())
        suite.settle(started.card_id)
        card = suite.get(started.card_id)
        expected = beijing_date(test_clock.now()) + dt.timedelta(days=30)
        assert (card.due_date.year, card.due_date.month, card.due_date.day) == (
            expected.year,
            expected.month,
            expected.day,
        )
        progress = suite.card.QueryStatus(
            pb.QueryStatusRequest(card_id=started.card_id), metadata=suite.at(Channel.HOTLINE)
        ).progress
        assert f"due by {expected.isoformat()}" in progress

    def test_A5_1_every_missing_or_malformed_field_is_named(self, suite: Suite) -> None:
        person = suite.person()
        error = rpc_error(
            lambda: suite.apply(
                person,
                bank_code="",
                photo=b"not an image",
                mobile="12345",
                address="",
                occupation="",
            )
        )
        code, reason, rule = refusal(error)
        assert (code, reason, rule) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_APPLICATION",
            "A5.1",
        )
        fields = {v.field for v in from_rpc_error(error).violations}
        assert fields == {
            "applicant.photo",
            "applicant.mobile",
            "applicant.address",
            "applicant.occupation",
            "bank_code",
        }

    @pytest.mark.parametrize(
        ("number", "check"),
        [(wrong_check_character(), "BAD_CHECK_DIGIT"), (impossible_birth_date(), "BAD_BIRTH_DATE")],
        ids=["check-character", "birth-date"],
    )
    def test_A5_1_A4_1_a_malformed_id_number_is_refused_at_once_as_identity_refuses_it(
        self, suite: Suite, number: str, check: str
    ) -> None:
        """申请人申领社会保障卡时,应当提供本人有效身份证件原件以及个人照片、职业、手机号码、常住地址等信息,并确定合作银行。

        A resident ID number with a wrong GB 11643 check character or a birth date that does
        not exist is no valid document: the application is refused before it starts, with the
        identity service's own reason, rule and check."""
        person = PersonSpec(number=number)
        error = rpc_error(lambda: suite.apply(person))
        assert refusal(error) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DOCUMENT", "A4.1")
        [violation] = from_rpc_error(error).violations
        assert (violation.field, violation.reason) == ("applicant.document.number", check)
        by_identity = from_rpc_error(
            rpc_error(
                lambda: suite.identity.GetPerson(
                    identity_pb2.GetPersonRequest(
                        person=identity_pb2.PersonRef(document=person.document())
                    ),
                    metadata=suite.service,
                )
            )
        )
        assert (by_identity.reason, by_identity.rule) == ("INVALID_DOCUMENT", "A4.1")
        assert [v.reason for v in by_identity.violations] == [check]

    def test_A4_1_every_operation_refuses_a_malformed_document_at_once(self, suite: Suite) -> None:
        """申请人申领社会保障卡时,应当提供本人有效身份证件原件。

        A counter operation, an agent's document and one person of an employer's batch are
        checked as the application is."""
        holder = suite.person()
        card_id = suite.apply(holder).card_id
        bad = PersonSpec(number=wrong_check_character())
        lost = rpc_error(
            lambda: suite.card.ReportTemporaryLoss(
                pb.ReportLossRequest(
                    request_id=suite.rid("lost"), card_id=card_id, document=bad.document()
                ),
                metadata=suite.at(Channel.HOTLINE),
            )
        )
        assert refusal(lost) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DOCUMENT", "A4.1")
        assert [v.field for v in from_rpc_error(lost).violations] == ["document.number"]
        agent = rpc_error(
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(
                    card_id=card_id,
                    agent=pb.Agent(
                        agent_document=bad.document(),
                        agent_name="王芳",
                        principal_document=holder.document(),
                        authorisation_ref="AUTH-0042",
                    ),
                ),
                metadata=suite.at(Channel.HOTLINE),
            )
        )
        assert reason_rule(agent) == ("INVALID_DOCUMENT", "A4.1")
        assert [v.field for v in from_rpc_error(agent).violations] == [
            "agent.agent_document.number"
        ]
        answer = suite.card.ApplyBatch(
            slices(
                pb.ApplyBatchRequest(
                    request_id=suite.rid("batch"),
                    employer=pb.Employer(employer_id=EMPLOYER_ID, name="北京示例有限公司"),
                    bank_code=BANK,
                    pickup_branch_id=INSTANT,
                    applicants=[suite.applicant(bad)],
                )
            ),
            metadata=suite.token(
                channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID
            ),
        )
        [result] = answer.results
        assert (result.reason, result.rule) == ("INVALID_DOCUMENT", "A4.1")
        assert result.violations[0].field == "applicants[0].document.number"

    def test_A3_1_an_application_from_a_channel_without_the_service_is_refused(
        self, suite: Suite
    ) -> None:
        person = suite.person()
        credentials = (
            suite.at(Channel.HOTLINE),
            suite.at(Channel.TRANSIT_APP, person),  # the person's own, in the transit app
            suite.at(Channel.PARK_OUTLET),
        )
        for credential in credentials:
            error = rpc_error(lambda c=credential: suite.apply(person, metadata=c))
            assert refusal(error) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "CHANNEL_NOT_ALLOWED",
                "A3.1",
            )

    def test_A4_2_a_second_application_is_refused_in_the_answer_and_leaves_nothing_behind(
        self, suite: Suite
    ) -> None:
        person = suite.person()
        first = suite.apply(person)
        in_progress = rpc_error(lambda: suite.apply(person))  # the first is not yet settled
        suite.settle(first.card_id)
        for error in (in_progress, rpc_error(lambda: suite.apply(person))):
            assert refusal(error) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "ALREADY_HAS_CARD",
                "A4.2",
            )
        assert suite.registered_card(person) == first.card_id
        status = suite.card.QueryStatus(
            pb.QueryStatusRequest(document=person.document()), metadata=suite.ops
        )
        assert status.card_id == first.card_id

    def test_A4_2_a_refusal_at_the_bank_releases_the_reservation_and_closes_the_account(
        self, suite: Suite
    ) -> None:
        person = suite.person()
        # The pickup branch belongs to another bank: the order step is refused after the
        # reservation and the account were made; both are undone.
        started = suite.apply(person, pickup=OTHER_INSTANT)
        application = suite.settle(started.card_id)
        assert application.state == pb.SAGA_STATE_FAILED
        assert application.refusal_reason == "UNKNOWN_BRANCH"
        assert suite.registered_card(person) == ""
        retry = suite.apply(person)
        assert suite.settle(retry.card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A4_4_the_bank_refuses_a_document_presented_that_differs_from_the_verified_one(
        self, suite: Suite
    ) -> None:
        """合作银行在开立社会保障卡金融账户时,严格核查比对申请人员身份信息的准确性、有效性和一致性。
        合作银行比对信息无误后方可为申请人开立社会保障卡金融账户。"""
        person = suite.person(valid_until=dt.date(2036, 1, 1))
        # The applicant shows a document whose validity is not the one the registry holds.
        started = suite.apply(person, document_valid_until=date_pb(dt.date(2031, 5, 1)))
        application = suite.settle(started.card_id)
        assert (application.state, application.refusal_reason, application.refusal_rule) == (
            pb.SAGA_STATE_FAILED,
            "IDENTITY_MISMATCH",
            "A4.4",
        )
        assert suite.get(started.card_id).status == pb.CARD_STATUS_REFUSED
        assert suite.registered_card(person) == ""  # the reservation was given back

    def test_A4_4_the_bank_refuses_an_expired_document_presented(self, suite: Suite) -> None:
        """合作银行在开立社会保障卡金融账户时,严格核查比对申请人员身份信息的准确性、有效性和一致性。"""
        person = suite.person(valid_until=dt.date(2036, 1, 1))
        # The registry knows the renewed document; the applicant shows the old, expired one.
        started = suite.apply(person, document_valid_until=date_pb(dt.date(2024, 3, 1)))
        application = suite.settle(started.card_id)
        assert (application.state, application.refusal_reason, application.refusal_rule) == (
            pb.SAGA_STATE_FAILED,
            "DOCUMENT_EXPIRED",
            "A4.4",
        )
        assert suite.registered_card(person) == ""
        # With the valid document the same person is issued a card.
        assert suite.settle(suite.apply(person).card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A4_4_a_long_term_document_matches_a_long_term_registration(self, suite: Suite) -> None:
        """合作银行比对信息无误后方可为申请人开立社会保障卡金融账户。"""
        person = suite.person(valid_until=None)
        assert suite.settle(suite.apply(person).card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A4_2_a_replayed_request_id_gives_the_same_answer_and_one_card(
        self, suite: Suite
    ) -> None:
        person = suite.person()
        first = suite.apply(person, request_id="kiosk-77")
        again = suite.apply(person, request_id="kiosk-77")
        assert first == again
        assert suite.settle(first.card_id).state == pb.SAGA_STATE_COMPLETED

    def test_A29_1_no_application_is_dated_before_the_rules_apply(
        self, suite: Suite, test_clock: SharedTestClock
    ) -> None:
        person = suite.person()
        test_clock.set(dt.datetime(2025, 12, 30, tzinfo=dt.UTC))
        error = rpc_error(lambda: suite.apply(person))
        assert refusal(error)[1:] == ("NOT_IN_FORCE", "A29.1")


class TestProductionAndDelivery:
    def test_A22_3_an_application_at_an_instant_branch_of_the_chosen_bank_is_made_on_the_spot(
        self, suite: Suite
    ) -> None:
        started = suite.apply(suite.person(), metadata=suite.branch(BANK, INSTANT), pickup=INSTANT)
        suite.settle(started.card_id)
        card = suite.get(started.card_id, history=True)
        assert card.status == pb.CARD_STATUS_READY
        assert card.card_number_masked
        assert [n.rule for n in card.notices] == ["A7.1"]

    def test_A22_3_another_banks_instant_branch_does_not_make_the_card_on_the_spot(
        self, suite: Suite
    ) -> None:
        started = suite.apply(suite.person(), metadata=suite.branch(OTHER_BANK, OTHER_INSTANT))
        suite.settle(started.card_id)
        assert suite.get(started.card_id).status == pb.CARD_STATUS_IN_PRODUCTION

    def test_A7_1_when_the_card_is_made_the_person_is_told_where_to_collect_it(
        self, suite: Suite
    ) -> None:
        started = suite.apply(suite.person())
        suite.settle(started.card_id)
        suite.produce(started.card_id)
        card = suite.get(started.card_id, history=True)
        assert [(n.recipient, n.rule) for n in card.notices] == [("person", "A7.1")]
        assert "collect it at branch" in card.notices[0].text

    def test_A7_2_A8_1_collection_at_the_branch_then_activation_online(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person)
        suite.settle(started.card_id)
        suite.produce(started.card_id)
        early = rpc_error(lambda: suite.activate(started.card_id, person))
        assert refusal(early)[1:] == ("NOT_COLLECTED", "A8.1")
        stranger = suite.person()
        wrong = rpc_error(lambda: suite.collect(started.card_id, stranger))
        assert refusal(wrong)[1:] == ("DOCUMENT_MISMATCH", "A7.2")
        assert suite.collect(started.card_id, person).status == pb.CARD_STATUS_COLLECTED
        assert suite.activate(started.card_id, person).status == pb.CARD_STATUS_ACTIVE
        history = suite.get(started.card_id, history=True).transitions
        assert [t.to_status for t in history] == [
            pb.CARD_STATUS_APPLIED,
            pb.CARD_STATUS_VERIFYING,
            pb.CARD_STATUS_IN_PRODUCTION,
            pb.CARD_STATUS_READY,
            pb.CARD_STATUS_COLLECTED,
            pb.CARD_STATUS_ACTIVE,
        ]
        assert [t.rule for t in history] == ["A5.1", "A4.1", "A22.1", "A7.1", "A7.2", "A8.1"]
        assert history[-1].channel == common_pb2.CHANNEL_ONLINE

    def test_A7_2_a_mailed_card_is_collected_when_the_post_delivers_it(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person, delivery=pb.DELIVERY_MAIL)
        suite.settle(started.card_id)
        suite.produce(started.card_id)
        post = suite.factory  # the factory's system reports the mailing and the delivery
        for method, status in (
            (pb.COLLECTION_METHOD_MAIL_SENT, pb.CARD_STATUS_MAILED),
            (pb.COLLECTION_METHOD_MAIL_DELIVERED, pb.CARD_STATUS_COLLECTED),
        ):
            card = suite.card.RecordCollection(
                pb.RecordCollectionRequest(
                    request_id=suite.rid("post"), card_id=started.card_id, method=method
                ),
                metadata=post,
            )
            assert card.status == status

    def test_A8_1_activation_at_a_branch_is_for_the_issuing_bank_only(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person)
        suite.settle(started.card_id)
        suite.produce(started.card_id)
        suite.collect(started.card_id, person)
        other = rpc_error(
            lambda: suite.activate(started.card_id, person, suite.branch(OTHER_BANK, OTHER_INSTANT))
        )
        assert refusal(other)[1:] == ("CHANNEL_NOT_ALLOWED", "A3.1")
        hotline = rpc_error(
            lambda: suite.activate(started.card_id, person, suite.at(Channel.HOTLINE))
        )
        assert refusal(hotline)[1:] == ("CHANNEL_NOT_ALLOWED", "A3.1")
        assert (
            suite.activate(started.card_id, person, suite.branch()).status == pb.CARD_STATUS_ACTIVE
        )


class TestStatusQueries:
    def test_A18_1_the_hotline_reads_progress_by_the_holders_document(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person)
        suite.settle(started.card_id)
        for channel in (Channel.HOTLINE, Channel.BANK_HOTLINE, Channel.DISTRICT_OUTLET):
            answer = suite.card.QueryStatus(
                pb.QueryStatusRequest(document=person.document()), metadata=suite.at(channel)
            )
            assert answer.card_id == started.card_id
            assert answer.progress.startswith("In production at ICBC")

    def test_A18_1_channels_without_the_service_cannot_query(self, suite: Suite) -> None:
        person = suite.person()
        started = suite.apply(person)
        error = rpc_error(
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(card_id=started.card_id),
                metadata=suite.at(Channel.TRANSIT_APP, person),
            )
        )
        assert refusal(error)[1:] == ("CHANNEL_NOT_ALLOWED", "A3.1")


def employer(suite: Suite, channel: Channel = Channel.ONLINE, **claims: Any) -> Any:
    """The employer's own credential (its credit code the subject)."""
    return suite.token(channel=channel, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID, **claims)


class TestEmployerBatches:
    def _batch(self, suite: Suite, people: list[Any], metadata: Any, request_id: str) -> Any:
        applicants = [suite.applicant(p) for p in people]
        applicants[1].mobile = "555"  # malformed: refused alone
        return suite.card.ApplyBatch(
            slices(
                pb.ApplyBatchRequest(
                    request_id=request_id,
                    employer=pb.Employer(employer_id=EMPLOYER_ID, name="Beijing Example Co."),
                    bank_code=BANK,
                    pickup_branch_id=INSTANT,
                    applicants=applicants,
                )
            ),
            metadata=metadata,
        )

    def test_A6_1_A4_2_a_refused_person_never_fails_the_batch(self, suite: Suite) -> None:
        holder, refused_later = suite.person(), suite.person(insured=False)
        suite.settle(suite.apply(holder).card_id)
        people = [suite.person(), suite.person(), holder, refused_later]
        answer = self._batch(suite, people, employer(suite), "batch-1")
        assert (answer.accepted, answer.refused) == (2, 2)
        assert answer.results[1].reason == "INVALID_APPLICATION"
        assert answer.results[1].violations[0].field == "applicants[1].mobile"
        # one person, one card: refused in the answer, not later in the saga
        assert (answer.results[2].reason, answer.results[2].rule) == ("ALREADY_HAS_CARD", "A4.2")
        for result in answer.results:
            if result.card_id:
                suite.settle(result.card_id)
        progress = suite.card.GetBatch(pb.GetBatchRequest(batch_id="batch-1"), metadata=suite.ops)
        assert (progress.total, progress.refused_at_submission) == (4, 2)
        assert (progress.completed, progress.refused) == (1, 1)
        assert progress.finished
        assert progress.refusals[0].reason == "NOT_ELIGIBLE"

    def test_A6_2_A7_3_an_employer_applies_at_a_branch_collects_and_hands_out(
        self, suite: Suite
    ) -> None:
        people = [suite.person() for _ in range(3)]
        at_branch = employer(suite, Channel.BANK_BRANCH, bank_code=BANK, outlet_id=BRANCH)
        answer = self._batch(suite, people, at_branch, "batch-2")
        card_id = answer.results[0].card_id
        suite.settle(card_id)
        card = suite.produce(card_id)
        notices = suite.get(card_id, history=True).notices
        assert notices[0].recipient == "employer"
        missing = rpc_error(
            lambda: suite.card.RecordCollection(
                pb.RecordCollectionRequest(
                    request_id=suite.rid("emp"),
                    card_id=card_id,
                    method=pb.COLLECTION_METHOD_BY_EMPLOYER,
                    employer=pb.EmployerDocuments(licence_number=EMPLOYER_ID),
                ),
                metadata=suite.branch(),
            )
        )
        assert refusal(missing)[1:] == ("EMPLOYER_DOCUMENTS_MISSING", "A7.3")
        card = suite.card.RecordCollection(
            pb.RecordCollectionRequest(
                request_id=suite.rid("emp"),
                card_id=card_id,
                method=pb.COLLECTION_METHOD_BY_EMPLOYER,
                employer=pb.EmployerDocuments(
                    licence_number=EMPLOYER_ID, authorisation_letter_ref="AUTH-2026-17"
                ),
            ),
            metadata=suite.branch(),
        )
        assert card.status == pb.CARD_STATUS_WITH_EMPLOYER
        card = suite.card.RecordHandout(
            pb.RecordHandoutRequest(request_id=suite.rid("hand"), card_id=card_id),
            metadata=employer(suite),
        )
        assert card.status == pb.CARD_STATUS_COLLECTED
        assert suite.activate(card_id, people[0]).status == pb.CARD_STATUS_ACTIVE

    def test_A3_1_a_batch_from_the_hotline_is_refused(self, suite: Suite) -> None:
        people = [suite.person() for _ in range(2)]
        # The employer's own credential through the bank's phone service: not an A3.1 channel.
        phone = employer(suite, Channel.BANK_HOTLINE, bank_code=BANK)
        error = rpc_error(lambda: self._batch(suite, people, phone, "b-3"))
        assert refusal(error) == (grpc.StatusCode.PERMISSION_DENIED, "CHANNEL_NOT_ALLOWED", "A3.1")
        # A hotline operator holds no employer's credential at all.
        error = rpc_error(lambda: self._batch(suite, people, suite.at(Channel.HOTLINE), "b-4"))
        assert refusal(error) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED", "")


def test_A23_1_no_card_or_bank_message_has_a_fee() -> None:
    for module in (pb, bank_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            names = {f.name for f in message.fields}
            assert not {n for n in names if "fee" in n or "charge" in n}, message.full_name
