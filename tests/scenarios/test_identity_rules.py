"""Identity rules over real gRPC against a real identity service, on SQLite and PostgreSQL:
A2 (who may apply), A4.1–A4.3 (verification, one person one card, deaths), A11.2 (the
preferential-treatment flags other services read eligibility from), A17.2 (basic information
changes), A21.2 (deaths reported to the rest of the suite)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from services.identity.main import build
from services.platform.auth import Role
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2 as pb
from sscard.identity.v1 import identity_pb2_grpc
from tests.support import PersonSpec, date_pb, refusal, resident_id, wait_serving


class Identity:
    """A client of the identity service acting as the HR feed, as a service, or as ops."""

    def __init__(self, channel: grpc.Channel, token: Callable[..., Any]) -> None:
        self.stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self.registry = token(roles=(Role.REGISTRY,), caller="hr-feed")
        self.service = token(roles=(Role.SERVICE,), caller="card-service")
        self.ops = token(roles=(Role.OPS,), caller="ops-dashboard")
        self._batches = 0

    def load(self, *people: PersonSpec) -> pb.ImportPersonsResponse:
        self._batches += 1
        batch = f"batch-{self._batches}"
        return self.stub.ImportPersons(
            (pb.ImportPersonsRequest(batch_id=batch, records=[p.record()]) for p in people),
            metadata=self.registry,
        )

    def verify(self, person: PersonSpec, name: str | None = None) -> pb.VerifyApplicantResponse:
        return self.stub.VerifyApplicant(
            pb.VerifyApplicantRequest(document=person.document(), name=name or person.name),
            metadata=self.service,
        )

    def reserve(
        self,
        person: PersonSpec,
        card_id: str,
        kind: int = pb.ISSUANCE_KIND_FIRST,
        replaces: str = "",
        request_id: str | None = None,
    ) -> pb.ReserveIssuanceResponse:
        return self.stub.ReserveIssuance(
            pb.ReserveIssuanceRequest(
                request_id=request_id or f"reserve-{card_id}",
                document=person.document(),
                name=person.name,
                card_id=card_id,
                kind=kind,  # type: ignore[arg-type]
                replaces_card_id=replaces,
            ),
            metadata=self.service,
        )

    def release(self, card_id: str, request_id: str | None = None) -> pb.ReleaseIssuanceResponse:
        return self.stub.ReleaseIssuance(
            pb.ReleaseIssuanceRequest(
                request_id=request_id or f"release-{card_id}", card_id=card_id
            ),
            metadata=self.service,
        )

    def person(self, person: PersonSpec, metadata: Any = None) -> pb.GetPersonResponse:
        return self.stub.GetPerson(
            pb.GetPersonRequest(
                person=pb.PersonRef(document=person.document()), include_history=True
            ),
            metadata=metadata or self.service,
        )


@pytest.fixture
def identity(start_service: Callable[..., Any], token: Callable[..., Any]) -> Identity:
    running = start_service("identity", build)
    wait_serving(running.channel)
    return Identity(running.channel, token)


class TestWhoMayApply:
    def test_A2_1_person_insured_in_beijing_may_apply(self, identity: Identity) -> None:
        person = PersonSpec(insured=True)
        identity.load(person)
        assert identity.verify(person).basis == pb.ELIGIBILITY_BASIS_INSURED_IN_BEIJING

    def test_A2_2_person_entitled_to_public_services_may_apply(self, identity: Identity) -> None:
        person = PersonSpec(insured=False, entitled=True)
        identity.load(person)
        assert identity.verify(person).basis == pb.ELIGIBILITY_BASIS_PUBLIC_SERVICE_ENTITLED

    def test_A2_3_anyone_else_is_refused_not_eligible(self, identity: Identity) -> None:
        person = PersonSpec(insured=False, entitled=False)
        identity.load(person)
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(person)
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("NOT_ELIGIBLE", "A2.3")


class TestVerification:
    def test_A4_1_unknown_person_is_not_found(self, identity: Identity) -> None:
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(PersonSpec())
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.NOT_FOUND
        assert (error.reason, error.rule) == ("PERSON_NOT_FOUND", "A4.1")

    def test_A4_1_wrong_name_is_an_identity_mismatch(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(person, name="李四")
        assert refusal(excinfo)[1].reason == "IDENTITY_MISMATCH"

    def test_A4_1_expired_document_is_refused(self, identity: Identity, test_clock: Any) -> None:
        person = PersonSpec(valid_until=dt.date(2027, 1, 31))
        identity.load(person)
        identity.verify(person)
        test_clock.advance(dt.timedelta(days=500))
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(person)
        assert (refusal(excinfo)[1].reason, refusal(excinfo)[1].rule) == (
            "DOCUMENT_EXPIRED",
            "A4.1",
        )

    def test_A4_1_malformed_document_names_the_field_and_hides_the_number(
        self, identity: Identity
    ) -> None:
        number = resident_id()
        broken = number[:-1] + ("0" if number[-1] != "0" else "1")
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(PersonSpec(number=broken))
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.rule == "A4.1"
        assert [v.field for v in error.violations] == ["document.number"]
        assert broken not in str(excinfo.value.details())
        assert all(broken not in v.description for v in error.violations)

    def test_A4_1_A11_2_verification_returns_preferential_flags_for_other_services(
        self, identity: Identity
    ) -> None:
        person = PersonSpec(
            preferential=(pb.PREFERENTIAL_TREATMENT_PARK_PASS, pb.PREFERENTIAL_TREATMENT_ELDERLY)
        )
        identity.load(person)
        flags = identity.verify(person).person.preferential
        assert set(flags) == {
            pb.PREFERENTIAL_TREATMENT_PARK_PASS,
            pb.PREFERENTIAL_TREATMENT_ELDERLY,
        }

    def test_A4_3_deceased_person_cannot_apply(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.stub.RecordDeath(
            pb.RecordDeathRequest(
                request_id="death-1",
                person=pb.PersonRef(document=person.document()),
                date_of_death=date_pb(dt.date(2026, 1, 5)),
            ),
            metadata=identity.registry,
        )
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(person, "card-dead")
        assert (refusal(excinfo)[1].reason, refusal(excinfo)[1].rule) == (
            "PERSON_DECEASED",
            "A4.3",
        )


class TestOnePersonOneCard:
    def test_A4_2_second_application_is_refused_already_has_card(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(person, "card-2")
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert (error.reason, error.rule) == ("ALREADY_HAS_CARD", "A4.2")
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.verify(person)
        assert refusal(excinfo)[1].reason == "ALREADY_HAS_CARD"

    def test_A4_2_released_place_can_be_taken_again(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        assert identity.release("card-1").released
        assert not identity.release("card-1", request_id="again").released
        identity.reserve(person, "card-2")
        assert identity.person(person).person.registered_card_id == "card-2"

    def test_A4_2_reissue_moves_the_place_and_a_failed_reissue_gives_it_back(
        self, identity: Identity
    ) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        identity.reserve(person, "card-1b", kind=pb.ISSUANCE_KIND_REISSUE, replaces="card-1")
        assert identity.person(person).person.registered_card_id == "card-1b"
        released = identity.release("card-1b")
        assert released.registered_card_id == "card-1"

    def test_A4_2_confirmed_replacement_leaves_no_claim_for_the_old_card(
        self, identity: Identity
    ) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        identity.reserve(person, "card-2", kind=pb.ISSUANCE_KIND_REPLACEMENT, replaces="card-1")
        identity.stub.ConfirmIssuance(
            pb.ConfirmIssuanceRequest(request_id="confirm-2", card_id="card-2"),
            metadata=identity.service,
        )
        assert identity.release("card-2").registered_card_id == ""
        identity.reserve(person, "card-3")

    def test_A4_2_replacement_must_name_the_card_holding_the_place(
        self, identity: Identity
    ) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(person, "card-2", kind=pb.ISSUANCE_KIND_REPLACEMENT, replaces="card-9")
        assert refusal(excinfo)[1].reason == "REPLACED_CARD_NOT_REGISTERED"

    def test_A4_2_reserving_is_idempotent_by_request_id(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        first = identity.reserve(person, "card-1", request_id="saga-1:0")
        again = identity.reserve(person, "card-1", request_id="saga-1:0")
        assert first == again
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(person, "card-7", request_id="saga-1:0")
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "REQUEST_ID_REUSED"

    def test_A4_2_a_replayed_refusal_is_the_same_refusal(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as excinfo:
                identity.reserve(person, "card-2", request_id="saga-2:0")
            assert refusal(excinfo)[1].reason == "ALREADY_HAS_CARD"
        identity.release("card-1")
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(person, "card-2", request_id="saga-2:0")
        assert refusal(excinfo)[1].reason == "ALREADY_HAS_CARD"

    def test_A27_3_upgrade_needs_an_older_generation_card(self, identity: Identity) -> None:
        holder, newcomer = PersonSpec(legacy_generation=2), PersonSpec()
        identity.load(holder, newcomer)
        identity.reserve(holder, "card-up", kind=pb.ISSUANCE_KIND_UPGRADE)
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.reserve(newcomer, "card-new", kind=pb.ISSUANCE_KIND_UPGRADE)
        assert (refusal(excinfo)[1].reason, refusal(excinfo)[1].rule) == (
            "NO_LEGACY_CARD",
            "A27.3",
        )


class TestBasicInformation:
    def test_A17_2_name_and_document_change_are_recorded_with_history(
        self, identity: Identity
    ) -> None:
        person = PersonSpec(name="王五")
        identity.load(person)
        new_number = resident_id(dt.date(1990, 3, 7), region="110108")
        answer = identity.stub.ChangeBasicInfo(
            pb.ChangeBasicInfoRequest(
                request_id="change-1",
                person=pb.PersonRef(document=person.document()),
                new_name="王武",
                new_document=common_pb2.IdentityDocument(
                    type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=new_number
                ),
                reason="household register change 2026-044",
            ),
            metadata=identity.registry,
        )
        assert answer.person.name == "王武"
        moved = PersonSpec(number=new_number, name="王武")
        view = identity.person(moved)
        assert [(h.old_name, h.new_name) for h in view.history] == [("王五", "王武")]
        assert view.history[0].old_document.number == person.number
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.person(person)
        assert refusal(excinfo)[1].reason == "PERSON_NOT_FOUND"

    def test_A17_2_a_document_of_another_person_is_refused(self, identity: Identity) -> None:
        first, second = PersonSpec(), PersonSpec()
        identity.load(first, second)
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.stub.ChangeBasicInfo(
                pb.ChangeBasicInfoRequest(
                    request_id="change-2",
                    person=pb.PersonRef(document=first.document()),
                    new_document=second.document(),
                ),
                metadata=identity.registry,
            )
        code, error = refusal(excinfo)
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert (error.reason, error.rule) == ("DOCUMENT_IN_USE", "A17.2")

    def test_A17_2_only_the_registry_feed_changes_basic_information(
        self, identity: Identity
    ) -> None:
        person = PersonSpec()
        identity.load(person)
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.stub.ChangeBasicInfo(
                pb.ChangeBasicInfoRequest(
                    request_id="change-3",
                    person=pb.PersonRef(document=person.document()),
                    new_name="赵六",
                ),
                metadata=identity.service,
            )
        assert refusal(excinfo)[0] == grpc.StatusCode.PERMISSION_DENIED


class TestDeaths:
    def test_A21_2_a_death_is_published_once_with_the_card_holding_the_place(
        self, identity: Identity
    ) -> None:
        person = PersonSpec()
        identity.load(person)
        identity.reserve(person, "card-1")
        request = pb.RecordDeathRequest(
            request_id="death-9",
            person=pb.PersonRef(document=person.document()),
            date_of_death=date_pb(dt.date(2026, 2, 1)),
        )
        first = identity.stub.RecordDeath(request, metadata=identity.registry)
        assert not first.person.alive
        request.request_id = "death-10"
        identity.stub.RecordDeath(request, metadata=identity.registry)
        events = identity.stub.ListPersonEvents(
            pb.ListPersonEventsRequest(after_sequence=0), metadata=identity.service
        ).events
        deaths = [e for e in events if e.type == pb.PERSON_EVENT_TYPE_PERSON_DIED]
        assert len(deaths) == 1
        assert deaths[0].registered_card_id == "card-1"
        assert deaths[0].date_of_death.year == 2026

    def test_A21_2_a_death_in_the_feed_is_published_too(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        person.died = dt.date(2026, 3, 1)
        assert identity.load(person).updated == 1
        events = identity.stub.ListPersonEvents(
            pb.ListPersonEventsRequest(after_sequence=0), metadata=identity.ops
        ).events
        assert [e.type for e in events] == [pb.PERSON_EVENT_TYPE_PERSON_DIED]


class TestImport:
    def test_A4_1_import_reports_each_record_and_a_bad_one_never_fails_the_batch(
        self, identity: Identity
    ) -> None:
        good, bad = PersonSpec(), PersonSpec(number="110105199013071234")
        answer = identity.load(good, bad, good)
        assert (answer.received, answer.created, answer.unchanged, answer.rejected) == (3, 1, 1, 1)
        rejected = answer.results[1]
        assert rejected.outcome == pb.IMPORT_OUTCOME_REJECTED
        assert rejected.violations[0].field == "document.number"
        assert answer.results[0].person_id == answer.results[2].person_id

    def test_import_replayed_with_the_same_batch_id_answers_the_same(
        self, identity: Identity
    ) -> None:
        people = [PersonSpec() for _ in range(3)]
        requests = [pb.ImportPersonsRequest(batch_id="b-7", records=[p.record()]) for p in people]
        first = identity.stub.ImportPersons(iter(requests), metadata=identity.registry)
        again = identity.stub.ImportPersons(iter(requests), metadata=identity.registry)
        assert first == again
        assert first.created == 3
        with pytest.raises(grpc.RpcError) as excinfo:
            identity.stub.ImportPersons(iter(requests[:2]), metadata=identity.registry)
        assert refusal(excinfo)[1].reason == "REQUEST_ID_REUSED"

    def test_ops_sees_masked_numbers_and_services_see_full_ones(self, identity: Identity) -> None:
        person = PersonSpec()
        identity.load(person)
        for_ops = identity.person(person, metadata=identity.ops).person.document
        for_service = identity.person(person).person.document
        assert for_ops.number == ""
        assert for_ops.number_masked == person.number[:6] + "********" + person.number[-4:]
        assert for_service.number == person.number
