"""The person registry's rules (services/identity/domain/person.py).

Rules: A2.1, A2.2, A2.3 (who may apply), A4.1 (verification and well-formed records),
A4.2 (one person, one card), A4.3 (deceased), A17.2 (basic-information changes),
A21.2 (deaths) and A27.3 (upgrade from a 1st / 2nd generation card).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.identity.domain.person import (
    Attributes,
    Basis,
    Event,
    EventType,
    IssuanceKind,
    Outcome,
    Person,
    RecordInput,
    Registration,
    Source,
    apply_record,
    change_basic_info,
    confirm,
    eligibility,
    record_death,
    release,
    reserve,
    validate_record,
    verify,
    verify_applicant,
)
from services.platform.documents import DocumentType, Sex, gb11643_check_char, parse_document
from services.platform.errors import DomainError, Kind

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
TODAY = date(2026, 3, 2)
BORN = date(1990, 3, 7)
K = IssuanceKind


def resident_id(birth: date = BORN, sequence: str = "001", region: str = "110105") -> str:
    """A valid resident ID number; an odd last sequence digit means male."""
    first17 = f"{region}{birth:%Y%m%d}{sequence}"
    return first17 + gb11643_check_char(first17)


DOC = parse_document(DocumentType.RESIDENT_ID, resident_id(), TODAY)


def make_record(**overrides: Any) -> RecordInput:
    base = RecordInput(
        document_type=DocumentType.RESIDENT_ID,
        document_number=resident_id(),
        name="Wang Fang",
        sex=None,
        birth_date=None,
        document_valid_until=date(2030, 1, 1),
        insured_in_beijing=True,
        public_service_entitled=False,
        date_of_death=None,
        preferential=frozenset(),
        legacy_card_generation=0,
        source=Source.HR,
    )
    return replace(base, **overrides)


def make_attributes(**overrides: Any) -> Attributes:
    """Attributes as validate_record(make_record()) would give them."""
    base = Attributes(
        document=DOC,
        name="Wang Fang",
        sex=Sex.MALE,
        birth_date=BORN,
        document_valid_until=date(2030, 1, 1),
        insured_in_beijing=True,
        public_service_entitled=False,
        date_of_death=None,
        preferential=frozenset(),
        legacy_card_generation=0,
        source=Source.HR,
    )
    return replace(base, **overrides)


def make_person(registration: Registration | None = None, **overrides: Any) -> Person:
    return Person("P-1", make_attributes(**overrides), registration, NOW)


def holding(card_id: str = "C1", **overrides: Any) -> Person:
    """A person whose place in the register is held by ``card_id`` (a first card)."""
    return make_person(Registration(card_id, K.FIRST, NOW - timedelta(days=30)), **overrides)


def refusal(call: Callable[[], object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call()
    return caught.value


class TestValidateRecord:
    """A4.1: a feed record is checked, and every malformed field reported at once."""

    def test_A4_1_a_good_record_gets_birth_date_and_sex_from_the_resident_id(self) -> None:
        attrs = validate_record(make_record(name="  Wang   Fang "), TODAY)
        assert (attrs.birth_date, attrs.sex) == (BORN, Sex.MALE)
        assert attrs == make_attributes()

    def test_A4_1_all_malformed_fields_are_reported_together(self) -> None:
        # A birth date is given: without it the unparsed number would add a fifth violation.
        bad = {"document_number": "1234", "name": " ", "source": None, "legacy_card_generation": 5}
        record = make_record(birth_date=BORN, **bad)
        err = refusal(lambda: validate_record(record, TODAY))
        assert (err.reason, err.rule, err.kind) == ("INVALID_PERSON_RECORD", "A4.1", Kind.INVALID)
        fields = [v.field for v in err.violations]
        assert fields == ["document.number", "name", "source", "legacy_card_generation"]

    def test_A4_1_birth_date_and_sex_must_agree_with_the_number(self) -> None:
        record = make_record(birth_date=date(1991, 1, 1), sex=Sex.FEMALE)
        err = refusal(lambda: validate_record(record, TODAY))
        found = [(v.field, v.reason) for v in err.violations]
        assert found == [("birth_date", "MISMATCH"), ("sex", "MISMATCH")]

    @pytest.mark.parametrize("died", [TODAY + timedelta(days=1), BORN - timedelta(days=1)])
    def test_A4_1_date_of_death_in_the_future_or_before_birth_is_refused(self, died: date) -> None:
        err = refusal(lambda: validate_record(make_record(date_of_death=died), TODAY))
        assert [(v.field, v.reason) for v in err.violations] == [("date_of_death", "OUT_OF_RANGE")]

    def test_A4_1_a_death_today_is_accepted(self) -> None:
        assert validate_record(make_record(date_of_death=TODAY), TODAY).date_of_death == TODAY


class TestVerification:
    """A2.1-A2.3 eligibility; A4.1 identity checks, A4.3 deceased, A4.2 register; in order."""

    @pytest.mark.parametrize(
        ("insured", "entitled", "basis"),
        [
            (True, False, Basis.INSURED_IN_BEIJING),
            (True, True, Basis.INSURED_IN_BEIJING),
            (False, True, Basis.PUBLIC_SERVICE_ENTITLED),
        ],
    )
    def test_A2_1_A2_2_insured_or_entitled_person_may_apply(
        self, insured: bool, entitled: bool, basis: Basis
    ) -> None:
        person = make_person(insured_in_beijing=insured, public_service_entitled=entitled)
        assert eligibility(person) is basis
        assert verify_applicant(person, "Wang Fang", TODAY) is basis

    def test_A2_3_anyone_else_is_not_eligible(self) -> None:
        person = make_person(insured_in_beijing=False, public_service_entitled=False)
        err = refusal(lambda: verify(person, "Wang Fang", TODAY))
        assert (err.reason, err.rule, err.kind) == ("NOT_ELIGIBLE", "A2.3", Kind.PRECONDITION)

    @pytest.mark.parametrize("check", [verify, verify_applicant])
    def test_A4_1_unknown_person_is_not_found(self, check: Callable[..., Basis]) -> None:
        err = refusal(lambda: check(None, "Wang Fang", TODAY))
        assert (err.reason, err.rule, err.kind) == ("PERSON_NOT_FOUND", "A4.1", Kind.NOT_FOUND)

    def test_A4_1_a_different_name_is_an_identity_mismatch(self) -> None:
        err = refusal(lambda: verify(make_person(), "Wang Fan", TODAY))
        assert (err.reason, err.rule) == ("IDENTITY_MISMATCH", "A4.1")
        assert [v.field for v in err.violations] == ["name"]

    @pytest.mark.parametrize("presented", ["ＷＡＮＧ　ｆａｎｇ", "  wang \t  FANG ", "Wang Fang"])
    def test_A4_1_names_compare_after_width_case_and_space_folding(self, presented: str) -> None:
        assert verify(make_person(), presented, TODAY) is Basis.INSURED_IN_BEIJING

    def test_A4_1_an_expired_document_is_refused_but_one_valid_today_is_not(self) -> None:
        expired = make_person(document_valid_until=TODAY - timedelta(days=1))
        err = refusal(lambda: verify(expired, "Wang Fang", TODAY))
        assert (err.reason, err.rule) == ("DOCUMENT_EXPIRED", "A4.1")
        assert verify(make_person(document_valid_until=TODAY), "Wang Fang", TODAY)

    def test_A4_3_a_deceased_person_cannot_apply(self) -> None:
        err = refusal(
            lambda: verify(make_person(date_of_death=date(2025, 1, 1)), "Wang Fang", TODAY)
        )
        assert (err.reason, err.rule) == ("PERSON_DECEASED", "A4.3")

    def test_A4_2_a_registered_person_passes_verify_but_not_verify_applicant(self) -> None:
        assert verify(holding(), "Wang Fang", TODAY) is Basis.INSURED_IN_BEIJING
        err = refusal(lambda: verify_applicant(holding(), "Wang Fang", TODAY))
        assert (err.reason, err.rule) == ("ALREADY_HAS_CARD", "A4.2")

    @pytest.mark.parametrize(
        ("overrides", "name", "reason"),
        [
            ({"date_of_death": date(2025, 1, 1)}, "Li Lei", "IDENTITY_MISMATCH"),
            ({"date_of_death": date(2025, 1, 1), "document_valid_until": date(2025, 6, 1)},
             "Wang Fang", "DOCUMENT_EXPIRED"),
            ({"date_of_death": date(2025, 1, 1), "insured_in_beijing": False}, "Wang Fang",
             "PERSON_DECEASED"),
        ],
    )  # fmt: skip
    def test_A4_1_checks_run_in_order_name_validity_death_eligibility_register(
        self, overrides: dict[str, Any], name: str, reason: str
    ) -> None:
        person = make_person(Registration("C1", K.FIRST, NOW), **overrides)
        assert refusal(lambda: verify_applicant(person, name, TODAY)).reason == reason


class TestOnePersonOneCard:
    """A4.2: one place per person; reissue / replacement move it. A27.3: upgrades."""

    def test_A4_2_first_reservation_takes_the_place(self) -> None:
        person = reserve(make_person(), "C1", K.FIRST, None, NOW)
        assert person.registration == Registration("C1", K.FIRST, NOW)
        assert person.updated_at == NOW

    def test_A4_2_reserving_the_same_card_again_is_a_no_op(self) -> None:
        person = reserve(make_person(), "C1", K.FIRST, None, NOW)
        assert reserve(person, "C1", K.FIRST, None, NOW + timedelta(hours=1)) is person

    @pytest.mark.parametrize("kind", [K.FIRST, K.UPGRADE])
    def test_A4_2_another_new_card_is_refused(self, kind: IssuanceKind) -> None:
        err = refusal(lambda: reserve(holding(legacy_card_generation=2), "C2", kind, None, NOW))
        assert (err.reason, err.rule) == ("ALREADY_HAS_CARD", "A4.2")

    @pytest.mark.parametrize("kind", [K.REISSUE, K.REPLACEMENT])
    def test_A4_2_reissue_and_replacement_move_the_place(self, kind: IssuanceKind) -> None:
        person = reserve(holding("C1"), "C2", kind, "C1", NOW)
        assert person.registration == Registration("C2", kind, NOW, previous_card_id="C1")

    @pytest.mark.parametrize(
        ("person", "replaces"),
        [(holding("C1"), None), (holding("C1"), "C9"), (make_person(), "C1")],
    )
    def test_A4_2_a_move_must_name_the_card_holding_the_place(
        self, person: Person, replaces: str | None
    ) -> None:
        err = refusal(lambda: reserve(person, "C2", K.REISSUE, replaces, NOW))
        assert (err.reason, err.rule) == ("REPLACED_CARD_NOT_REGISTERED", "A4.2")

    def test_A4_2_releasing_an_unconfirmed_reissue_hands_the_place_back(self) -> None:
        reissued = reserve(holding("C1"), "C2", K.REISSUE, "C1", NOW)
        reg = release(reissued, "C2", NOW).registration
        assert reg is not None and (reg.card_id, reg.previous_card_id) == ("C1", None)

    def test_A4_2_after_confirm_release_frees_the_place(self) -> None:
        confirmed = confirm(reserve(holding("C1"), "C2", K.REISSUE, "C1", NOW), NOW)
        assert confirmed.registration == Registration("C2", K.REISSUE, NOW)
        assert release(confirmed, "C2", NOW).registration is None
        assert release(holding("C1"), "C1", NOW).registration is None

    def test_A4_2_releasing_a_card_not_holding_the_place_changes_nothing(self) -> None:
        reissued = reserve(holding("C1"), "C2", K.REISSUE, "C1", NOW)
        assert release(reissued, "C1", NOW) is reissued
        assert release(reissued, "C9", NOW) is reissued
        nobody = make_person()
        assert release(nobody, "C1", NOW) is nobody
        assert confirm(nobody, NOW) is nobody

    @pytest.mark.parametrize("generation", [1, 2])
    def test_A27_3_an_upgrade_needs_a_1st_or_2nd_generation_card(self, generation: int) -> None:
        person = reserve(make_person(legacy_card_generation=generation), "C1", K.UPGRADE, None, NOW)
        assert person.registration == Registration("C1", K.UPGRADE, NOW)
        err = refusal(lambda: reserve(make_person(), "C1", K.UPGRADE, None, NOW))
        assert (err.reason, err.rule) == ("NO_LEGACY_CARD", "A27.3")


OPS = ["first", "reissue", "wrong_replacement", "release_current", "release_any", "confirm"]


@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 30)), max_size=40))
def test_A4_2_no_sequence_of_operations_gives_a_person_two_cards(
    steps: list[tuple[str, int]],
) -> None:
    person = make_person()
    reserved: list[str] = []
    released: set[str] = set()
    for number, (op, pick) in enumerate(steps):
        before, fresh = person.registration, f"C{number}"
        current = before.card_id if before else None
        try:
            if op == "first":
                reserved.append(fresh)
                person = reserve(person, fresh, K.FIRST, None, NOW)
                assert before is None, "a FIRST card was reserved beside another card"
            elif op == "reissue":
                reserved.append(fresh)
                person = reserve(person, fresh, K.REISSUE, current, NOW)
            elif op == "wrong_replacement":
                others = [c for c in [*reserved, "X"] if c != current]
                reserved.append(fresh)
                person = reserve(person, fresh, K.REPLACEMENT, others[pick % len(others)], NOW)
                raise AssertionError("a replacement from a card without the place succeeded")
            elif op in ("release_current", "release_any"):
                pool = reserved or ["X"]
                card = current if op == "release_current" else pool[pick % len(pool)]
                if card is not None:
                    person = release(person, card, NOW)
                    if card == current:
                        released.add(card)
            else:
                person = confirm(person, NOW)
        except DomainError as err:
            assert err.rule == "A4.2"
        reg = person.registration
        if reg is not None:
            assert reg.card_id in reserved and reg.card_id not in released
            assert reg.previous_card_id in (None, *reserved)
            assert reg.previous_card_id != reg.card_id
            assert reg.previous_card_id not in released


class TestRegistryFeed:
    """apply_record: A17.2 name changes kept as history; A21.2 a first death raises an event."""

    def test_A4_1_a_new_person_is_created(self) -> None:
        outcome, change = apply_record(None, "P-1", make_attributes(), NOW)
        assert outcome is Outcome.CREATED
        assert change.person == Person("P-1", make_attributes(), None, NOW)
        assert (change.history, change.events) == ([], [])

    def test_A4_1_identical_attributes_change_nothing(self) -> None:
        existing = holding()
        outcome, change = apply_record(existing, "P-1", make_attributes(), NOW)
        assert outcome is Outcome.UNCHANGED and change.person is existing
        assert (change.history, change.events) == ([], [])

    def test_A17_2_a_new_name_is_kept_in_history_with_an_event(self) -> None:
        outcome, change = apply_record(holding(), "P-1", make_attributes(name="Wang Li"), NOW)
        assert outcome is Outcome.UPDATED and change.person.name == "Wang Li"
        (entry,) = change.history
        assert (entry.old_name, entry.new_name, entry.changed_at) == ("Wang Fang", "Wang Li", NOW)
        assert change.events == [Event(EventType.BASIC_INFO_CHANGED, "P-1", NOW, "C1")]

    def test_A21_2_a_first_death_in_the_feed_raises_one_event_and_a_repeat_none(self) -> None:
        died = make_attributes(date_of_death=date(2026, 2, 1))
        outcome, change = apply_record(holding(), "P-1", died, NOW)
        assert outcome is Outcome.UPDATED
        assert change.events == [Event(EventType.PERSON_DIED, "P-1", NOW, "C1", date(2026, 2, 1))]
        refreshed = replace(died, insured_in_beijing=False)
        outcome, again = apply_record(change.person, "P-1", refreshed, NOW)
        assert (outcome, again.events) == (Outcome.UPDATED, [])

    def test_A21_2_a_new_person_arriving_dead_is_created_with_a_death_event(self) -> None:
        died = make_attributes(date_of_death=date(2026, 2, 1))
        outcome, change = apply_record(None, "P-1", died, NOW)
        assert outcome is Outcome.CREATED
        assert [e.type for e in change.events] == [EventType.PERSON_DIED]


class TestBasicInfoChange:
    """A17.2: name and document changes are recorded with their old and new values."""

    def test_A17_2_name_and_document_change_is_recorded_in_history(self) -> None:
        new_doc = parse_document(DocumentType.RESIDENT_ID, resident_id(date(1990, 3, 8)), TODAY)
        valid = date(2040, 1, 1)
        change = change_basic_info(holding(), "Wang Li", new_doc, valid, "court", NOW)
        attrs = change.person.attributes
        assert (attrs.name, attrs.document) == ("Wang Li", new_doc)
        assert (attrs.birth_date, attrs.document_valid_until) == (date(1990, 3, 8), valid)
        (entry,) = change.history
        assert (entry.old_name, entry.new_name) == ("Wang Fang", "Wang Li")
        assert (entry.old_document, entry.new_document, entry.reason) == (DOC, new_doc, "court")
        assert change.events == [Event(EventType.BASIC_INFO_CHANGED, "P-1", NOW, "C1")]

    def test_A17_2_nothing_to_change_is_refused(self) -> None:
        err = refusal(lambda: change_basic_info(make_person(), None, None, None, "x", NOW))
        assert (err.reason, err.rule, err.kind) == ("NOTHING_TO_CHANGE", "A17.2", Kind.INVALID)

    def test_A17_2_identical_values_record_nothing(self) -> None:
        person = make_person()
        valid = person.attributes.document_valid_until
        change = change_basic_info(person, "Wang Fang", DOC, valid, "same", NOW)
        assert change.person is person
        assert (change.history, change.events) == ([], [])


class TestDeath:
    """A21.2 a confirmed death raises an event once; A4.3 the person is then deceased."""

    def test_A21_2_a_future_date_of_death_is_refused(self) -> None:
        err = refusal(lambda: record_death(holding(), TODAY + timedelta(days=1), TODAY, NOW))
        assert (err.reason, err.rule, err.kind) == ("INVALID_DATE_OF_DEATH", "A21.2", Kind.INVALID)

    def test_A21_2_first_record_emits_an_event_and_a_second_changes_nothing(self) -> None:
        change = record_death(holding(), TODAY, TODAY, NOW)
        assert not change.person.alive
        assert change.events == [Event(EventType.PERSON_DIED, "P-1", NOW, "C1", TODAY)]
        again = record_death(change.person, date(2026, 1, 1), TODAY, NOW)
        assert again.person is change.person and again.events == []

    def test_A21_2_a_date_of_death_before_birth_is_refused(self) -> None:
        err = refusal(lambda: record_death(holding(), BORN - timedelta(days=1), TODAY, NOW))
        assert (err.reason, err.rule) == ("INVALID_DATE_OF_DEATH", "A21.2")
        assert [v.field for v in err.violations] == ["date_of_death"]
