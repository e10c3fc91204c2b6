"""Rule A4.1 (identity verification): document numbers are parsed and malformed ones refused."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.platform.documents import (
    Document,
    DocumentType,
    Sex,
    document_type_from_name,
    gb11643_check_char,
    parse_document,
)
from services.platform.errors import DomainError, Kind

TODAY = datetime.date(2024, 6, 1)
T = DocumentType
PROVINCES = [
    c
    for lo, hi in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
    for c in range(lo, hi + 1)
]


def with_check(first17: str) -> str:
    return first17 + gb11643_check_char(first17)


RESIDENT = with_check("11010519900307002")  # female (sequence 002)
HMT = with_check("81000019851231001")  # Hong Kong, male
FOREIGN_2023 = with_check("91115619770315002")


def refusal(doc_type: DocumentType, raw: str, field: str = "document.number") -> str:
    """Parse ``raw``, expect A4.1 INVALID_DOCUMENT and return the violation reason."""
    with pytest.raises(DomainError) as caught:
        parse_document(doc_type, raw, TODAY, field=field)
    err = caught.value
    assert (err.reason, err.kind, err.rule) == ("INVALID_DOCUMENT", Kind.INVALID, "A4.1")
    (violation,) = err.violations
    assert violation.field == field
    number = raw.strip().upper()
    if number:
        assert number not in err.message and number not in violation.description
        assert raw not in err.message and raw not in violation.description
    return violation.reason


def test_gb11643_check_char_matches_the_standard_example() -> None:
    # The worked example of GB 11643-1999: 11010519491231002X.
    assert gb11643_check_char("11010519491231002") == "X"
    with pytest.raises(ValueError):
        gb11643_check_char("1234")


def test_A4_1_valid_resident_id_is_normalized_and_decoded() -> None:
    doc = parse_document(T.RESIDENT_ID, f"  {RESIDENT.lower()} ", TODAY)
    assert doc == Document(T.RESIDENT_ID, RESIDENT, datetime.date(1990, 3, 7), Sex.FEMALE)
    assert parse_document(T.RESIDENT_ID, "11010519491231002x", TODAY).number.endswith("X")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "REQUIRED"),
        ("   ", "REQUIRED"),
        (RESIDENT[:17], "BAD_FORMAT"),
        (RESIDENT[:10] + "A" + RESIDENT[11:], "BAD_FORMAT"),
        (RESIDENT + "0", "BAD_FORMAT"),
        (RESIDENT.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"}), "BAD_FORMAT"),
        (with_check("81000019900307002"), "BAD_REGION"),
        (with_check("19010519900307002"), "BAD_REGION"),
        (with_check("11010519900230002"), "BAD_BIRTH_DATE"),
        (with_check("11010518991231002"), "BAD_BIRTH_DATE"),
        (with_check("11010520240602002"), "BAD_BIRTH_DATE"),
    ],
)
def test_A4_1_malformed_resident_id_is_refused(raw: str, reason: str) -> None:
    assert refusal(T.RESIDENT_ID, raw, field="applicant.document.number") == reason


def test_A4_1_resident_id_with_wrong_check_digit_is_refused() -> None:
    wrong = RESIDENT[:17] + ("0" if RESIDENT[17] != "0" else "1")
    assert refusal(T.RESIDENT_ID, wrong) == "BAD_CHECK_DIGIT"


def test_A4_1_birth_date_today_is_accepted() -> None:
    doc = parse_document(T.RESIDENT_ID, with_check("11010520240601001"), TODAY)
    assert (doc.birth_date, doc.sex) == (TODAY, Sex.MALE)


def test_A4_1_valid_hmt_residence_permit_is_decoded() -> None:
    doc = parse_document(T.HMT_RESIDENCE_PERMIT, HMT, TODAY)
    assert (doc.birth_date, doc.sex) == (datetime.date(1985, 12, 31), Sex.MALE)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (RESIDENT, "BAD_REGION"),
        (with_check("81000119851231001"), "BAD_REGION"),
        (with_check("83000019851332001"), "BAD_BIRTH_DATE"),
        (HMT[:17] + ("0" if HMT[17] != "0" else "1"), "BAD_CHECK_DIGIT"),
        ("H12345678", "BAD_FORMAT"),
    ],
)
def test_A4_1_malformed_hmt_residence_permit_is_refused(raw: str, reason: str) -> None:
    assert refusal(T.HMT_RESIDENCE_PERMIT, raw) == reason


@pytest.mark.parametrize(
    ("raw", "birth", "sex"),
    [
        (FOREIGN_2023, datetime.date(1977, 3, 15), Sex.FEMALE),
        ("USA110077031501", datetime.date(1977, 3, 15), None),  # 2017 card, 20th century
        ("fra310015010112", datetime.date(2015, 1, 1), None),  # 2017 card, 21st century
        ("GBR110024060201", datetime.date(1924, 6, 2), None),  # 2024-06-02 is after TODAY
    ],
)
def test_A4_1_valid_foreign_permanent_residence_id(
    raw: str, birth: datetime.date, sex: Sex | None
) -> None:
    doc = parse_document(T.FOREIGN_PERMANENT_RESIDENCE_ID, raw, TODAY)
    assert (doc.number, doc.birth_date, doc.sex) == (raw.upper(), birth, sex)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("US1110077031501", "BAD_FORMAT"),
        ("USA11007703150", "BAD_FORMAT"),
        (RESIDENT, "BAD_FORMAT"),  # 18 characters but not starting with 9
        ("USA110070023001", "BAD_BIRTH_DATE"),
        (with_check("91115619771315002"), "BAD_BIRTH_DATE"),
        (FOREIGN_2023[:17] + ("0" if FOREIGN_2023[17] != "0" else "1"), "BAD_CHECK_DIGIT"),
    ],
)
def test_A4_1_malformed_foreign_permanent_residence_id_is_refused(raw: str, reason: str) -> None:
    assert refusal(T.FOREIGN_PERMANENT_RESIDENCE_ID, raw) == reason


@pytest.mark.parametrize(
    ("doc_type", "good", "bad"),
    [
        (T.HK_MACAO_TRAVEL_PERMIT, "H12345678", "H1234567"),
        (T.HK_MACAO_TRAVEL_PERMIT, "m1234567890", "X12345678"),
        (T.TAIWAN_TRAVEL_PERMIT, "12345678", "123456789"),
        (T.TAIWAN_TRAVEL_PERMIT, "1234567890", "T1234567"),
        (T.PASSPORT, "E12345678", "ABCDEFG"),
        (T.PASSPORT, "12345", "E1234-567"),
        (T.PASSPORT, "X1234567890ABCDEF", "X1234567890ABCDEFG"),
    ],
)
def test_A4_1_other_documents_check_their_format(
    doc_type: DocumentType, good: str, bad: str
) -> None:
    assert parse_document(doc_type, good, TODAY) == Document(doc_type, good.upper())
    assert refusal(doc_type, bad) == "BAD_FORMAT"


def test_A4_1_document_type_from_name() -> None:
    assert document_type_from_name("HMT_RESIDENCE_PERMIT") is T.HMT_RESIDENCE_PERMIT
    for name in ("DOCUMENT_TYPE_UNSPECIFIED", "DRIVING_LICENCE", ""):
        with pytest.raises(DomainError) as caught:
            document_type_from_name(name)
        assert (caught.value.reason, caught.value.rule) == ("INVALID_DOCUMENT", "A4.1")
        (violation,) = caught.value.violations
        assert (violation.field, violation.reason) == ("document.type", "UNKNOWN_DOCUMENT_TYPE")


# --- properties ------------------------------------------------------------------------------

dates = st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY)
sequences = st.integers(min_value=0, max_value=999)


@st.composite
def resident_ids(draw: st.DrawFn) -> tuple[str, datetime.date, int]:
    region = f"{draw(st.sampled_from(PROVINCES))}{draw(st.integers(0, 9999)):04d}"
    born, seq = draw(dates), draw(sequences)
    return with_check(f"{region}{born:%Y%m%d}{seq:03d}"), born, seq


@st.composite
def hmt_permits(draw: st.DrawFn) -> tuple[str, datetime.date, int]:
    region = draw(st.sampled_from(["810000", "820000", "830000"]))
    born, seq = draw(dates), draw(sequences)
    return with_check(f"{region}{born:%Y%m%d}{seq:03d}"), born, seq


def corrupt(number: str, data: st.DataObject) -> str:
    """Replace one position by a different allowed character (a digit, or X at the end)."""
    pos = data.draw(st.integers(0, len(number) - 1))
    allowed = "0123456789X" if pos == len(number) - 1 else "0123456789"
    char = data.draw(st.sampled_from([c for c in allowed if c != number[pos]]))
    return number[:pos] + char + number[pos + 1 :]


@pytest.mark.parametrize(
    ("doc_type", "numbers"),
    [(T.RESIDENT_ID, resident_ids()), (T.HMT_RESIDENCE_PERMIT, hmt_permits())],
)
@given(data=st.data())
def test_A4_1_every_valid_number_parses_and_every_single_corruption_is_refused(
    doc_type: DocumentType,
    numbers: st.SearchStrategy[tuple[str, datetime.date, int]],
    data: st.DataObject,
) -> None:
    number, born, seq = data.draw(numbers)
    doc = parse_document(doc_type, number, TODAY)
    assert (doc.number, doc.birth_date) == (number, born)
    assert doc.sex is (Sex.MALE if seq % 2 else Sex.FEMALE)
    assert refusal(doc_type, corrupt(number, data)) in {
        "BAD_FORMAT",
        "BAD_REGION",
        "BAD_BIRTH_DATE",
        "BAD_CHECK_DIGIT",
    }
