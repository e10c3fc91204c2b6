"""`make demo`: one person from application to an active card, then a lost card through
temporary loss, formal loss, reissue and the new card's activation, then money and the end:
a transit top-up at a kiosk, the financial function activated at the bank's counter, and the
card cancelled at the bank once the person's business is settled, against a running suite.

Start the suite first with `make run` (in another terminal). The demo plays every part over
real gRPC, each with its own credential: the HR data feed registers a new person, bank
operations register a branch, the person applies online, the hotline reads the progress, the
bank's card factory reports the card made, the branch hands it over, and the person activates
it online. It prints each step and the card's status in plain words. Each integrator calls over
its own mutual-TLS connection with its own development certificate (var/tls/<client>.pem), to
which its credential is bound.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
import uuid
from typing import Any

import grpc
from google.type.date_pb2 import Date

from services.platform import config as settings
from services.platform.cli import dev_client_tls, dev_credential
from services.platform.clients import open_channel
from services.platform.documents import gb11643_check_char
from services.platform.grpc_errors import from_rpc_error
from services.platform.protoconv import enum_name
from services.platform.slices import slices
from sscard.bank.v1 import (
    bank_pb2,
    bank_pb2_grpc,
    counter_pb2,
    counter_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
)
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc

BANK, BRANCH = "ICBC", "ICBC-XIDAN"
PHOTO = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # a JPEG header stands in for the photo


class Integrators:
    """Stubs that call each service over the calling integrator's own connection: the client
    whose credential a call carries presents its own certificate, to which that credential is
    bound (a shared connection would present one certificate for every credential)."""

    def __init__(self) -> None:
        self._client_of: dict[str, str] = {}
        self._channels: dict[tuple[str, str], grpc.Channel] = {}

    def credential(self, client: str, **claims: Any) -> Any:
        """Call metadata with a development credential of a registered client
        (deploy/clients.toml), as `sscard token` mints it: each integrator its own, with its
        narrow role."""
        own = dev_client_tls(client)
        certificate = own.certificate if own is not None else None
        token = dev_credential(client, certificate=certificate, **claims)
        self._client_of[token] = client
        return [("authorization", f"Bearer {token}")]

    def stub(self, service: str, stub_class: Any) -> Any:
        return _Routed(self, service, stub_class)

    def channel(self, service: str, metadata: Any) -> grpc.Channel:
        client = self._client_of[dict(metadata)["authorization"].removeprefix("Bearer ")]
        if (service, client) not in self._channels:
            own = dev_client_tls(client)
            self._channels[service, client] = open_channel(settings.target_of(service), own)
        return self._channels[service, client]


class _Routed:
    """A stub whose every method goes over the connection of the credential it carries."""

    def __init__(self, integrators: Integrators, service: str, stub_class: Any) -> None:
        self._integrators = integrators
        self._service = service
        self._stub_class = stub_class

    def __getattr__(self, method: str) -> Any:
        def call(request: Any, metadata: Any, **options: Any) -> Any:
            channel = self._integrators.channel(self._service, metadata)
            rpc = getattr(self._stub_class(channel), method)
            return rpc(request, metadata=metadata, **options)

        return call


INTEGRATORS = Integrators()
credential = INTEGRATORS.credential


def say(step: str, text: str) -> None:
    print(f"\n== {step}\n   {text}", flush=True)


def new_person() -> tuple[common_pb2.IdentityDocument, str]:
    birth = dt.date(1970, 1, 1) + dt.timedelta(days=random.randrange(12_000))
    first17 = f"110105{birth:%Y%m%d}{random.randrange(1000):03d}"
    number = first17 + gb11643_check_char(first17)
    return common_pb2.IdentityDocument(
        type=common_pb2.DOCUMENT_TYPE_RESIDENT_ID, number=number
    ), "李明"


def main() -> int:
    identity = INTEGRATORS.stub("identity", identity_pb2_grpc.IdentityServiceStub)
    bank = INTEGRATORS.stub("bank", bank_pb2_grpc.BankServiceStub)
    bank_counter = INTEGRATORS.stub("bank", counter_pb2_grpc.CounterServiceStub)
    ledger = INTEGRATORS.stub("bank", ledger_pb2_grpc.LedgerServiceStub)
    transit = INTEGRATORS.stub("transit", transit_pb2_grpc.TransitServiceStub)
    card = INTEGRATORS.stub("card", card_pb2_grpc.CardServiceStub)
    run = uuid.uuid4().hex[:8]
    document, name = new_person()
    hotline = credential("hotline-96066", operator="96066-07")
    counter = credential(
        "icbc-core", channel="BANK_BRANCH", roles=("counter",), outlet=BRANCH, operator="T-031"
    )
    factory = credential("card-factory")
    ops = credential("ops-console")

    def progress(card_id: str) -> card_pb2.QueryStatusResponse:
        return card.QueryStatus(card_pb2.QueryStatusRequest(card_id=card_id), metadata=hotline)

    def wait_for(card_id: str, status: int) -> card_pb2.QueryStatusResponse:
        for _ in range(200):
            answer = progress(card_id)
            if answer.status in (status, card_pb2.CARD_STATUS_REFUSED):
                return answer
            time.sleep(0.1)
        raise SystemExit("the suite did not move on; is `make run` still running?")

    def feed(batch_id: str, **facts: Any) -> None:
        """The HR data feed sends the person's record (with ``facts`` it reports now)."""
        record = identity_pb2.PersonRecord(
            document=document,
            name=name,
            insured_in_beijing=True,
            source=identity_pb2.RECORD_SOURCE_HR,
            **facts,
        )
        request = identity_pb2.ImportPersonsRequest(batch_id=batch_id, records=[record])
        identity.ImportPersons(slices(request), metadata=credential("hr-feed"))

    say("The HR data feed registers a person", f"{name}, resident ID {document.number[:6]}****")
    feed(f"demo-{run}")
    bank.UpsertBranch(
        bank_pb2.UpsertBranchRequest(
            request_id=f"demo-branch-{BRANCH}",
            branch=bank_pb2.Branch(
                bank_code=BANK, branch_id=BRANCH, name="ICBC Xidan", address="Xidan, Beijing"
            ),
        ),
        metadata=ops,
    )
    # The portal signs the person in (real-name authentication, outside the suite) and asks the
    # registry for their opaque id: the person's own credential names it, never the ID number.
    person_id = identity.GetPerson(
        identity_pb2.GetPersonRequest(person=identity_pb2.PersonRef(document=document)),
        metadata=credential("online-portal", roles=("portal",)),
    ).person.person_id
    online = credential("online-portal", person=person_id)

    started = card.Apply(
        card_pb2.ApplyRequest(
            request_id=f"demo-apply-{run}",
            applicant=card_pb2.Applicant(
                document=document,
                name=name,
                photo=PHOTO,
                occupation="engineer",
                mobile="13812345678",
                address="1 Xichang'an Street, Xicheng, Beijing",
            ),
            bank_code=BANK,
            delivery=card_pb2.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=BRANCH,
        ),
        metadata=online,
    )
    card_id = started.card_id
    say("The person applies online (A5.1)", f"card {card_id}: {progress(card_id).progress}")
    answer = wait_for(card_id, card_pb2.CARD_STATUS_IN_PRODUCTION)
    say("The hotline reads the progress (A18.1)", answer.progress)
    if answer.status == card_pb2.CARD_STATUS_REFUSED:
        return 1

    order = bank.GetProductionOrder(
        bank_pb2.GetProductionOrderRequest(card_id=card_id), metadata=factory
    )
    bank.MarkProduced(
        bank_pb2.MarkProducedRequest(request_id=f"demo-made-{run}", order_id=order.order_id),
        metadata=factory,
    )
    answer = wait_for(card_id, card_pb2.CARD_STATUS_READY)
    notices = card.GetCard(
        card_pb2.GetCardRequest(card_id=card_id, include_history=True), metadata=hotline
    ).notices
    say("The bank's factory makes the card (A7.1)", answer.progress)
    for notice in notices:
        print(f"   notice to the {notice.recipient}: {notice.text}")

    card.RecordCollection(
        card_pb2.RecordCollectionRequest(
            request_id=f"demo-collect-{run}",
            card_id=card_id,
            method=card_pb2.COLLECTION_METHOD_AT_BRANCH,
            document=document,
        ),
        metadata=counter,
    )
    say("The person collects it at the branch (A7.2)", progress(card_id).progress)

    card.ActivateCard(
        card_pb2.ActivateCardRequest(
            request_id=f"demo-activate-{run}", card_id=card_id, document=document
        ),
        metadata=online,
    )
    say("The person activates it online (A8.1)", progress(card_id).progress)

    print_history(card, card_id, hotline, "The card's history")

    # --- Act two: the card is lost --------------------------------------------------------
    district = credential("district-outlets", outlet="XC-07")
    card.ResetServicePassword(
        card_pb2.ResetServicePasswordRequest(
            request_id=f"demo-password-{run}",
            card_id=card_id,
            document=document,
            new_password="538271",
        ),
        metadata=online,
    )
    say("The person sets a service password online (A12.2)", "the hotline will ask for it")
    card.ReportTemporaryLoss(
        card_pb2.ReportLossRequest(
            request_id=f"demo-lost-{run}",
            card_id=card_id,
            document=document,
            service_password="538271",
        ),
        metadata=hotline,
    )
    say(
        "The card is lost: the hotline takes a temporary loss (A13.1, A13.2)",
        progress(card_id).progress,
    )
    card.ReportFormalLoss(
        card_pb2.ReportLossRequest(
            request_id=f"demo-formal-{run}", card_id=card_id, document=document
        ),
        metadata=district,
    )
    say("Still not found: a formal loss at a district outlet (A13.4)", progress(card_id).progress)
    successor = card.ReissueCard(
        card_pb2.ReissueCardRequest(
            request_id=f"demo-reissue-{run}",
            card_id=card_id,
            document=document,
            delivery=card_pb2.DELIVERY_BRANCH_PICKUP,
            pickup_branch_id=BRANCH,
        ),
        metadata=online,
    ).card_id
    answer = wait_for(successor, card_pb2.CARD_STATUS_IN_PRODUCTION)
    say("A reissue is applied for online (A15.1, due in 4 working days: A22.2)", answer.progress)
    order = bank.GetProductionOrder(
        bank_pb2.GetProductionOrderRequest(card_id=successor), metadata=factory
    )
    bank.MarkProduced(
        bank_pb2.MarkProducedRequest(request_id=f"demo-made2-{run}", order_id=order.order_id),
        metadata=factory,
    )
    wait_for(successor, card_pb2.CARD_STATUS_READY)
    card.RecordCollection(
        card_pb2.RecordCollectionRequest(
            request_id=f"demo-collect2-{run}",
            card_id=successor,
            method=card_pb2.COLLECTION_METHOD_AT_BRANCH,
            document=document,
        ),
        metadata=counter,
    )
    card.ActivateCard(
        card_pb2.ActivateCardRequest(
            request_id=f"demo-activate2-{run}", card_id=successor, document=document
        ),
        metadata=online,
    )
    say("The new card is collected and activated (A16.5)", progress(successor).progress)
    say("The old card", progress(card_id).progress)
    print_history(card, successor, hotline, "The new card's history and notices")

    # --- Act three: money, and the end of the card ----------------------------------------
    kiosk = credential("ykt-kiosks", outlet="YKT-0815")
    wallet = transit.TopUp(
        transit_pb2.TopUpRequest(request_id=f"kiosk-{run}", card_id=successor, amount_fen=5_000),
        metadata=kiosk,
    )
    say(
        "50 yuan is topped up at a transit kiosk (A10.1, A10.2)",
        f"{wallet.balance_after_fen / 100:.2f} yuan on the card",
    )
    number = bank.GetProductionOrder(
        bank_pb2.GetProductionOrderRequest(card_id=successor), metadata=factory
    ).card_number
    bank_counter.ActivateFinancial(
        counter_pb2.ActivateFinancialRequest(
            request_id=f"demo-financial-{run}",
            card_id=successor,
            document=document,
            card_number=number,
        ),
        metadata=counter,
    )
    say(
        "The financial function is activated at the bank's counter (A9.1, A9.2)",
        "activated; the SS function is "
        + enum_name(card_pb2.CardStatus, progress(successor).status),
    )
    today = dt.date.today()
    settled = Date(year=today.year, month=today.month, day=today.day)
    feed(f"demo-settled-{run}", business_settled_on=settled)
    say("HR reports the person's social security business settled", "the card may be cancelled")
    card.CancelCard(
        card_pb2.CancelCardRequest(
            request_id=f"demo-cancel-{run}",
            card_id=successor,
            document=document,
            payout_destination="cash",
        ),
        metadata=counter,
    )
    say("The card is cancelled at the issuing bank (A19.1)", progress(successor).progress)
    for _ in range(200):
        account = ledger.GetBalance(ledger_pb2.GetBalanceRequest(card_id=successor), metadata=ops)
        if account.closed:
            break
        time.sleep(0.1)
    balance = transit.GetBalance(transit_pb2.GetBalanceRequest(card_id=successor), metadata=ops)
    say(
        "Its transit balance went to the account, the account paid out and closed",
        f"transit {balance.balance_fen / 100:.2f} yuan; account closed: {account.closed}",
    )
    entries = ledger.ListEntries(
        ledger_pb2.ListEntriesRequest(card_id=successor), metadata=ops
    ).entries
    for entry in reversed(entries):
        print(
            f"   ledger: {enum_name(ledger_pb2.EntrySource, entry.source):<16} "
            f"{entry.amount_fen / 100:>8.2f} yuan  balance {entry.balance_after_fen / 100:.2f}"
        )
    return 0


def print_history(card: Any, card_id: str, metadata: Any, title: str) -> None:
    history = card.GetCard(
        card_pb2.GetCardRequest(card_id=card_id, include_history=True), metadata=metadata
    )
    print(f"\n== {title}")
    for t in history.transitions:
        when = t.at.ToDatetime(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
        print(
            f"   {when:%Y-%m-%d %H:%M}  {enum_name(card_pb2.CardStatus, t.to_status):<16} "
            f"{enum_name(common_pb2.Channel, t.channel):<15} rule {t.rule:<6} {t.reason}"
        )
    for notice in history.notices:
        print(f"   notice ({notice.rule}) to the {notice.recipient}: {notice.text}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as exc:
        error = from_rpc_error(exc)
        print(f"\nrefused: {error.reason} (rule {error.rule or '-'}): {error.message}")
        if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            print("is the suite running? start it with `make run` in another terminal")
        sys.exit(1)
