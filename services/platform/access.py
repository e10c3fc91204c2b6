"""The authorization matrix: for every RPC of every service, which roles may call it.

The call guard refuses a call whose credential carries none of its method's roles
(PERMISSION_DENIED ``ROLE_NOT_ALLOWED``), and any method without a row (deny by default). What a
role may then do to a given card is decided in the service, in one place each:

* the channel matrix of A3.1 (``channels``) and the issuing-bank reach of a bank branch;
* a ``person`` credential reaches only its own cards, wallets, applications and notices:
  another person's answers exactly as a card that does not exist (NOT_FOUND);
* an ``employer`` reaches only its own batches and employees' cards;
* a ``bank`` core system books only its own bank's accounts.

Which client kind may hold which role is ``auth.KIND_RULES``; which client holds it is the
client registry. The README's integrator section prints this table (``sscard access``), and a
test walks every cell over real gRPC.
"""

from __future__ import annotations

from services.platform.auth import KIND_RULES, Caller, Role
from services.platform.errors import DomainError, Kind

SERVICE, OPS, COUNTER, PERSON = Role.SERVICE, Role.OPS, Role.COUNTER, Role.PERSON
EMPLOYER, REGISTRY, FACTORY, BANK, PORTAL = (
    Role.EMPLOYER,
    Role.REGISTRY,
    Role.FACTORY,
    Role.BANK,
    Role.PORTAL,
)


def _rows(service: str, rows: dict[str, set[Role]]) -> dict[str, frozenset[Role]]:
    return {f"/{service}/{method}": frozenset(roles) for method, roles in rows.items()}


MATRIX: dict[str, frozenset[Role]] = {
    **_rows(
        "sscard.identity.v1.IdentityService",
        {
            "ImportPersons": {REGISTRY},
            "GetPerson": {SERVICE, REGISTRY, OPS, PORTAL},
            "VerifyApplicant": {SERVICE, OPS},
            "ReserveIssuance": {SERVICE},
            "ReleaseIssuance": {SERVICE},
            "ConfirmIssuance": {SERVICE},
            "ChangeBasicInfo": {REGISTRY},
            "RecordDeath": {REGISTRY},
            "ListPersonEvents": {SERVICE, OPS},
        },
    ),
    **_rows(
        "sscard.card.v1.CardService",
        {
            "Apply": {PERSON, COUNTER},
            "ApplyBatch": {EMPLOYER},
            "GetBatch": {EMPLOYER, SERVICE, OPS},
            "GetApplication": {PERSON, COUNTER, EMPLOYER, SERVICE, OPS},
            "WatchSaga": {PERSON, COUNTER, EMPLOYER, OPS},
            "GetCard": {PERSON, COUNTER, EMPLOYER, SERVICE, OPS},
            "QueryStatus": {PERSON, COUNTER, EMPLOYER, SERVICE, OPS},
            "RecordProduced": {SERVICE},
            "RecordCollection": {COUNTER, FACTORY},
            "RecordHandout": {EMPLOYER},
            "RecordEmployerReturn": {COUNTER},
            "ActivateCard": {PERSON, COUNTER},
            "ReportTemporaryLoss": {PERSON, COUNTER},
            "ReportFormalLoss": {COUNTER},
            "UnlockCard": {COUNTER},
            "UpdateContactInfo": {PERSON, COUNTER},
            "ChangeServicePassword": {PERSON, COUNTER},
            "ResetServicePassword": {PERSON, COUNTER},
            "ReissueCard": {PERSON, COUNTER},
            "ReplaceCard": {PERSON, COUNTER},
            "VerifyServicePassword": {SERVICE},
            "CancelCard": {COUNTER},
        },
    ),
    **_rows(
        "sscard.card.v1.OpsService",
        {
            "ListSagas": {OPS},
            "GetSaga": {OPS},
            "RetrySaga": {OPS},
            "CompensateSaga": {OPS},
            "ListDeadlines": {OPS},
        },
    ),
    **_rows(
        "sscard.bank.v1.BankService",
        {
            "UpsertBranch": {OPS},
            "ListBranches": {PERSON, EMPLOYER, COUNTER, SERVICE, OPS},
            "OpenAccount": {SERVICE},
            "CloseAccount": {SERVICE},
            "CreateProductionOrder": {SERVICE},
            "CancelProductionOrder": {SERVICE},
            "MarkProduced": {FACTORY},
            "GetProductionOrder": {FACTORY, SERVICE, OPS},
            "SuspendForLoss": {SERVICE},
            "LiftLossSuspension": {SERVICE},
            "GetAccount": {SERVICE, OPS},
            "RecallCard": {SERVICE, OPS},
            "DestroyCard": {OPS},
            "GetCardRecall": {SERVICE, OPS},
        },
    ),
    **_rows(
        "sscard.bank.v1.CounterService",
        {
            "ActivateFinancial": {COUNTER},
            "ReportFinancialLoss": {COUNTER},
            "UnlockFinancial": {COUNTER},
            "ChangeReservedPhone": {COUNTER},
            "SetFinancialPassword": {COUNTER},
            "ChangeFinancialPassword": {COUNTER},
            "ResetFinancialPassword": {COUNTER},
            "VerifyFinancialPassword": {SERVICE},
            "GetFinancialState": {COUNTER, SERVICE, OPS},
            "BookHomeService": {COUNTER, PERSON},
            "GetHomeService": {COUNTER, PERSON, OPS},
            "ListHomeServices": {COUNTER, OPS},
            "UpdateHomeService": {COUNTER, OPS},
        },
    ),
    **_rows(
        "sscard.bank.v1.LedgerService",
        {
            "Credit": {BANK, COUNTER, SERVICE},
            "Debit": {BANK, COUNTER, SERVICE},
            "Transfer": {BANK, COUNTER, SERVICE},
            "GetBalance": {BANK, COUNTER, SERVICE, OPS},
            "ListEntries": {BANK, COUNTER, SERVICE, OPS},
            "SetAccountTier": {OPS},
            "SuspendNonCounter": {SERVICE, OPS},
            "ResumeNonCounter": {SERVICE, OPS},
            "CloseFinancial": {COUNTER, SERVICE},
            "ListAlerts": {OPS},
            "AssignAlert": {OPS},
            "ResolveAlert": {OPS},
        },
    ),
    **_rows(
        "sscard.transit.v1.TransitService",
        {
            "TopUp": {COUNTER, PERSON},
            "GetBalance": {COUNTER, PERSON, SERVICE, OPS},
            "ListTransactions": {COUNTER, PERSON, SERVICE, OPS},
            "Refund": {COUNTER},
            "RefundBalance": {SERVICE},
            "ListRefunds": {OPS},
            "GetRefund": {COUNTER, SERVICE, OPS},
            "PurchaseParkPass": {COUNTER},
            "GetParkPass": {COUNTER, PERSON, SERVICE, OPS},
            "TransferParkPass": {SERVICE},
            "RecordCardStatus": {SERVICE},
        },
    ),
}


def authorize(method: str, caller: Caller) -> None:
    """PERMISSION_DENIED unless ``caller`` holds one of the roles of ``method``'s row."""
    allowed = MATRIX.get(method)
    if allowed is None:
        raise DomainError(
            "METHOD_NOT_AUTHORIZED", "no credential may call this method", kind=Kind.PERMISSION
        )
    if not caller.roles & allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise DomainError(
            "ROLE_NOT_ALLOWED",
            f"this operation needs one of the roles: {names}",
            kind=Kind.PERMISSION,
            metadata={"method": method.rsplit("/", 1)[-1]},
        )


_COLUMNS = (PERSON, EMPLOYER, COUNTER, BANK, FACTORY, REGISTRY, PORTAL, OPS, SERVICE)


def markdown() -> str:
    """The matrix as a Markdown table, with which client kinds may hold each role."""
    holders = {
        role: ", ".join(k.value for k, rules in KIND_RULES.items() if role in rules.roles)
        for role in _COLUMNS
    }
    lines = [
        "| method | " + " | ".join(r.value for r in _COLUMNS) + " |",
        "| --- |" + " :-: |" * len(_COLUMNS),
    ]
    for method, roles in MATRIX.items():
        service, name = method.strip("/").split("/")
        short = f"{service.split('.')[1]} {service.rsplit('.', 1)[1]}.{name}"
        lines.append(
            f"| {short} | " + " | ".join("✓" if r in roles else "" for r in _COLUMNS) + " |"
        )
    lines.append("")
    lines += [f"- `{role.value}`: held by {holders[role]}" for role in _COLUMNS]
    return "\n".join(lines)
