"""Identity documents: parsing and validating document numbers (rule A4.1, identity verification).

An applicant identifies with one of six documents: resident ID (居民身份证), passport (护照),
mainland travel permit for Hong Kong and Macao residents (港澳居民来往内地通行证), mainland travel
permit for Taiwan residents (台湾居民来往大陆通行证), residence permit for Hong Kong, Macao and
Taiwan residents (港澳台居民居住证) and foreign permanent resident ID card (外国人永久居留身份证).

``parse_document`` normalizes a number (strip, uppercase), checks its structure per type and
decodes the birth date and sex where the number carries them. A malformed number raises
``DomainError(reason="INVALID_DOCUMENT", kind=Kind.INVALID, rule="A4.1")`` with one field
violation whose reason names the failed check (``REQUIRED``, ``BAD_FORMAT``, ``BAD_REGION``,
``BAD_BIRTH_DATE``, ``BAD_CHECK_DIGIT``). Neither message nor description echoes the number.

Every service that accepts a document checks it here, so a malformed number gets the same
answer wherever it is presented: the identity service's registry and feeds, the card service's
applications and counter operations. Pure Python: no gRPC, no database.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from services.platform.errors import DomainError, FieldViolation, Kind, Violations

RULE = "A4.1"
REASON = "INVALID_DOCUMENT"
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)


class DocumentType(enum.Enum):
    """Kinds of identity document; values are the ``sscard.common.v1.DocumentType`` names."""

    RESIDENT_ID = "RESIDENT_ID"
    PASSPORT = "PASSPORT"
    HK_MACAO_TRAVEL_PERMIT = "HK_MACAO_TRAVEL_PERMIT"
    TAIWAN_TRAVEL_PERMIT = "TAIWAN_TRAVEL_PERMIT"
    HMT_RESIDENCE_PERMIT = "HMT_RESIDENCE_PERMIT"
    FOREIGN_PERMANENT_RESIDENCE_ID = "FOREIGN_PERMANENT_RESIDENCE_ID"


class Sex(enum.Enum):
    MALE = "MALE"
    FEMALE = "FEMALE"


@dataclass(frozen=True)
class Document:
    """A validated document: normalized number plus what the number itself encodes."""

    type: DocumentType
    number: str
    birth_date: datetime.date | None = None
    sex: Sex | None = None


# --- GB 11643 (ISO 7064 MOD 11-2) -------------------------------------------------------------

_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_CHECK_CHARS = "10X98765432"


def gb11643_check_char(first17: str) -> str:
    """Check character ('0'-'9' or 'X') of the 17 leading digits of an 18-character number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("expected exactly 17 ASCII digits")
    return _CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


# --- checks ----------------------------------------------------------------------------------


class _Refusal(Exception):
    """Internal: one failed check, turned into a field violation by ``parse_document``."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


_Decoded = tuple[datetime.date | None, Sex | None]
_Validator = Callable[[str, datetime.date], _Decoded]

# Province-level codes issued on mainland resident IDs (71 Taiwan, 81 HK, 82 Macao are not).
_MAINLAND_PROVINCES = frozenset(
    str(code)
    for lo, hi in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
    for code in range(lo, hi + 1)
)
_HMT_PREFIXES = frozenset({"810000", "820000", "830000"})  # Hong Kong, Macao, Taiwan


def _birth_date(year: int, month: int, day: int, today: datetime.date) -> datetime.date:
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        raise _Refusal(
            "BAD_BIRTH_DATE", "the birth date in the number is not a real date"
        ) from None
    if born > today:
        raise _Refusal("BAD_BIRTH_DATE", "the birth date in the number is in the future")
    if born < _EARLIEST_BIRTH:
        raise _Refusal("BAD_BIRTH_DATE", "the birth date in the number is before 1900")
    return born


def _gb11643(
    regex: str, shape: str, region_ok: Callable[[str], bool], region_text: str
) -> _Validator:
    """An 18-character number: region, YYYYMMDD at 7-14, sequence (odd = male), check char."""
    pattern = re.compile(regex, re.ASCII)

    def validate(number: str, today: datetime.date) -> _Decoded:
        if not pattern.fullmatch(number):
            raise _Refusal("BAD_FORMAT", shape)
        if not region_ok(number):
            raise _Refusal("BAD_REGION", region_text)
        born = _birth_date(int(number[6:10]), int(number[10:12]), int(number[12:14]), today)
        if gb11643_check_char(number[:17]) != number[17]:
            raise _Refusal("BAD_CHECK_DIGIT", "the check character does not match the number")
        return born, Sex.MALE if int(number[16]) % 2 else Sex.FEMALE

    return validate


def _shape(regex: str, description: str) -> _Validator:
    """A number whose structure is all there is to check; it encodes no birth date or sex."""
    pattern = re.compile(regex, re.ASCII)

    def validate(number: str, today: datetime.date) -> _Decoded:
        if not pattern.fullmatch(number):
            raise _Refusal("BAD_FORMAT", description)
        return None, None

    return validate


_FOREIGN_2017 = re.compile(r"[A-Z]{3}\d{12}", re.ASCII)
_FOREIGN_2023 = _gb11643(
    r"9\d{16}[\dX]",
    "a foreign permanent resident ID is 3 letters and 12 digits (2017 card) "
    "or 9, 16 digits and a digit or X (2023 card)",
    lambda n: True,  # region and nationality codes are not checked against code lists
    "",
)


def _foreign_permanent_residence_id(number: str, today: datetime.date) -> _Decoded:
    """2023 card: '9', 2-digit region, 3-digit nationality, then the GB 11643 layout.

    2017 card (15 characters): ISO 3166 alpha-3 nationality (only its shape is checked),
    4-digit region, YYMMDD birth date, 1-digit sequence, 1 check digit. The check algorithm
    of the 2017 card is not public, so that digit is only required to be a digit, and sex is
    not decoded. The century is the later one that does not put the birth date after today.
    Region and nationality codes are not checked against code lists on either card.
    """
    if not _FOREIGN_2017.fullmatch(number):
        return _FOREIGN_2023(number, today)
    yy, month, day = int(number[7:9]), int(number[9:11]), int(number[11:13])
    try:
        return _birth_date(2000 + yy, month, day, today), None
    except _Refusal:
        return _birth_date(1900 + yy, month, day, today), None


_VALIDATORS: dict[DocumentType, _Validator] = {
    DocumentType.RESIDENT_ID: _gb11643(
        r"\d{17}[\dX]",
        "a resident ID number is 17 digits followed by a digit or X",
        lambda n: n[:2] in _MAINLAND_PROVINCES,
        "the number does not start with a mainland province-level region code",
    ),
    DocumentType.HMT_RESIDENCE_PERMIT: _gb11643(
        r"\d{17}[\dX]",
        "a residence permit number is 17 digits followed by a digit or X",
        lambda n: n[:6] in _HMT_PREFIXES,
        "a residence permit number starts with 810000, 820000 or 830000",
    ),
    DocumentType.FOREIGN_PERMANENT_RESIDENCE_ID: _foreign_permanent_residence_id,
    DocumentType.HK_MACAO_TRAVEL_PERMIT: _shape(
        r"[HM](\d{8}|\d{10})", "a Hong Kong/Macao travel permit number is H or M and 8 or 10 digits"
    ),
    DocumentType.TAIWAN_TRAVEL_PERMIT: _shape(
        r"\d{8}|\d{10}", "a Taiwan travel permit number is 8 or 10 digits"
    ),
    DocumentType.PASSPORT: _shape(
        r"(?=.*\d)[A-Z0-9]{5,17}",
        "a passport number is 5 to 17 letters or digits, at least one digit",
    ),
}


# --- public API ------------------------------------------------------------------------------


def _error(field: str, reason: str, description: str, message: str) -> DomainError:
    return DomainError(
        reason=REASON,
        message=message,
        kind=Kind.INVALID,
        rule=RULE,
        violations=(FieldViolation(field=field, description=description, reason=reason),),
    )


def parse_document(
    doc_type: DocumentType, raw: str, today: datetime.date, field: str = "document.number"
) -> Document:
    """Validate ``raw`` as a number of ``doc_type`` (A4.1); raise INVALID_DOCUMENT if malformed."""
    number = raw.strip().upper()
    try:
        if not number:
            raise _Refusal("REQUIRED", "the document number is missing")
        birth_date, sex = _VALIDATORS[doc_type](number, today)
    except _Refusal as refusal:
        message = f"{field} is not a valid {doc_type.value} number: {refusal.description}"
        raise _error(field, refusal.reason, refusal.description, message) from None
    return Document(doc_type, number, birth_date, sex)


def parse_document_into(
    doc_type: DocumentType | None,
    number: str,
    today: datetime.date,
    violations: Violations,
    prefix: str = "document",
) -> Document | None:
    """Validate a document, adding a violation instead of raising (A4.1)."""
    if doc_type is None:
        violations.add(f"{prefix}.type", "the document type is required", "REQUIRED")
        return None
    try:
        return parse_document(doc_type, number, today, field=f"{prefix}.number")
    except DomainError as exc:
        violations.items.extend(exc.violations)
        return None


def known_type(name: str) -> DocumentType | None:
    """The document type with this exact proto enum name, or None."""
    return DocumentType.__members__.get(name)


def document_type_from_name(name: str) -> DocumentType:
    """The document type with this exact proto enum name; INVALID_DOCUMENT otherwise."""
    found = known_type(name)
    if found is None:
        known = ", ".join(t.name for t in DocumentType)
        description = f"unknown document type; expected one of {known}"
        raise _error("document.type", "UNKNOWN_DOCUMENT_TYPE", description, description)
    return found


def invalid_document(violations: Violations) -> None:
    """Raise the violations collected while checking a document as INVALID_DOCUMENT (A4.1)."""
    violations.raise_if_any(REASON, rule=RULE)
