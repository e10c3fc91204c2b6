"""`make demo`: one person from application to an active card, against a running suite.

Start the suite first with `make run` (in another terminal). The demo plays every part over
real gRPC, each with its own credential: the HR data feed registers a new person, bank
operations register a branch, the person applies online, the hotline reads the progress, the
bank's card factory reports the card made, the branch hands it over, and the person activates
it online. It prints each step and the card's status in plain words.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import time
import uuid
from typing import Any

import grpc

from services.identity.domain.documents import gb11643_check_char
from services.platform import config as settings
from services.platform.auth import Channel, Role, mint_token
from services.platform.grpc_errors import from_rpc_error
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.common.v1 import common_pb2
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc

BANK, BRANCH = "ICBC", "ICBC-XIDAN"
PHOTO = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # a JPEG header stands in for the photo


def credential(channel: Channel, *roles: Role, **claims: str) -> Any:
    secret = settings.read_secret(os.environ, "AUTH_SECRET", settings.VAR_DIR / "auth.secret")
    token = mint_token(secret, f"demo-{channel.value.lower()}", channel, roles=set(roles), **claims)
    return [("authorization", f"Bearer {token}")]


def say(step: str, text: str) -> None:
    print(f"\n== {step}\n   {text}", flush=True)


def new_person() -> tuple[common_pb2.IdentityDocument, str]:
    birth = dt.date(1970, 1, 1) + dt.timedelta(days=random.randrange(12_000))
    first17 = f"110105{birth:%Y%m%d}{random.randrange(1000):03d}"
    number = first17 + gb11643_check_char(first17)
    return common_pb2.IdentityDocument(type=common_pb2.RESIDENT_ID, number=number), "李明"


def main() -> int:
    identity = identity_pb2_grpc.IdentityServiceStub(
        grpc.insecure_channel(settings.target_of("identity"))
    )
    bank = bank_pb2_grpc.BankServiceStub(grpc.insecure_channel(settings.target_of("bank")))
    card = card_pb2_grpc.CardServiceStub(grpc.insecure_channel(settings.target_of("card")))
    run = uuid.uuid4().hex[:8]
    document, name = new_person()
    online = credential(Channel.ONLINE, Role.COUNTER)
    hotline = credential(Channel.HOTLINE, Role.COUNTER, operator_id="96066-07")
    counter = credential(
        Channel.BANK_BRANCH, Role.COUNTER, bank_code=BANK, outlet_id=BRANCH, operator_id="T-031"
    )
    factory = credential(Channel.INTERNAL, Role.SERVICE)

    def progress(card_id: str) -> card_pb2.QueryStatusResponse:
        return card.QueryStatus(card_pb2.QueryStatusRequest(card_id=card_id), metadata=hotline)

    def wait_for(card_id: str, status: int) -> card_pb2.QueryStatusResponse:
        for _ in range(200):
            answer = progress(card_id)
            if answer.status in (status, card_pb2.REFUSED):
                return answer
            time.sleep(0.1)
        raise SystemExit("the suite did not move on; is `make run` still running?")

    say("The HR data feed registers a person", f"{name}, resident ID {document.number[:6]}****")
    identity.ImportPersons(
        iter(
            [
                identity_pb2.ImportPersonsRequest(
                    batch_id=f"demo-{run}",
                    records=[
                        identity_pb2.PersonRecord(
                            document=document,
                            name=name,
                            insured_in_beijing=True,
                            source=identity_pb2.HR,
                        )
                    ],
                )
            ]
        ),
        metadata=credential(Channel.INTERNAL, Role.REGISTRY),
    )
    bank.UpsertBranch(
        bank_pb2.UpsertBranchRequest(
            request_id=f"demo-branch-{BRANCH}",
            branch=bank_pb2.Branch(
                bank_code=BANK, branch_id=BRANCH, name="ICBC Xidan", address="Xidan, Beijing"
            ),
        ),
        metadata=credential(Channel.INTERNAL, Role.OPS),
    )

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
            delivery=card_pb2.BRANCH_PICKUP,
            pickup_branch_id=BRANCH,
        ),
        metadata=online,
    )
    card_id = started.card_id
    say("The person applies online (A5.1)", f"card {card_id}: {progress(card_id).progress}")
    answer = wait_for(card_id, card_pb2.IN_PRODUCTION)
    say("The hotline reads the progress (A18.1)", answer.progress)
    if answer.status == card_pb2.REFUSED:
        return 1

    order = bank.GetProductionOrder(
        bank_pb2.GetProductionOrderRequest(card_id=card_id), metadata=factory
    )
    bank.MarkProduced(
        bank_pb2.MarkProducedRequest(request_id=f"demo-made-{run}", order_id=order.order_id),
        metadata=factory,
    )
    answer = wait_for(card_id, card_pb2.READY)
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
            method=card_pb2.AT_BRANCH,
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

    history = card.GetCard(
        card_pb2.GetCardRequest(card_id=card_id, include_history=True), metadata=hotline
    )
    print("\n== The card's history")
    for t in history.transitions:
        when = t.at.ToDatetime(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
        print(
            f"   {when:%Y-%m-%d %H:%M}  {card_pb2.CardStatus.Name(t.to_status):<14} "
            f"{common_pb2.Channel.Name(t.channel):<12} rule {t.rule:<6} {t.reason}"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as exc:
        error = from_rpc_error(exc)
        print(f"\nrefused: {error.reason} (rule {error.rule or '-'}): {error.message}")
        if exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            print("is the suite running? start it with `make run` in another terminal")
        sys.exit(1)
