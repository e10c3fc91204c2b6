"""Benchmark: an employer batch of 10,000 people, every application saga to its end.

    python -m tests.bench.bench_batch [--people N]

Starts identity, bank and card as their own processes on fresh SQLite databases, registers the
people with identity and the pickup branch with the bank, sends one ApplyBatch, and polls
GetBatch every few seconds, printing progress, until no saga is running. Prints the time from
the batch call to the last saga finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time

from services.platform.auth import Channel, Role
from services.platform.slices import slices
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from sscard.card.v1 import card_pb2, card_pb2_grpc
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.bench.processes import launch
from tests.cardsuite import BANK, BRANCH, EMPLOYER_ID, JPEG
from tests.support import PersonSpec, resident_id

SERVICES = ("identity", "bank", "card")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    args = parser.parse_args()
    people = [
        PersonSpec(
            number=resident_id(
                dt.date(1960, 1, 1) + dt.timedelta(days=i // 900), seq=(i % 900) + 1
            ),
            name=f"职工{i}",
        )
        for i in range(args.people)
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        launch(SERVICES, {s: f"sqlite:///{tmp}/{s}.db" for s in SERVICES}) as suite,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(suite.channel("identity"))
        identity.ImportPersons(
            slices(
                identity_pb2.ImportPersonsRequest(
                    batch_id="staff", records=[p.record() for p in people]
                )
            ),
            metadata=suite.metadata(Role.REGISTRY),
            timeout=600,
        )
        bank = bank_pb2_grpc.BankServiceStub(suite.channel("bank"))
        bank.UpsertBranch(
            bank_pb2.UpsertBranchRequest(
                request_id="branch",
                branch=bank_pb2.Branch(bank_code=BANK, branch_id=BRANCH, name="Xidan"),
            ),
            metadata=suite.metadata(Role.OPS),
        )
        card = card_pb2_grpc.CardServiceStub(suite.channel("card"))
        started = time.perf_counter()
        answer = card.ApplyBatch(
            slices(
                card_pb2.ApplyBatchRequest(
                    request_id="batch-bench",
                    employer=card_pb2.Employer(employer_id=EMPLOYER_ID, name="Bench Co."),
                    bank_code=BANK,
                    pickup_branch_id=BRANCH,
                    applicants=[
                        card_pb2.Applicant(
                            document=p.document(),
                            document_valid_until=p.document_valid_until(),
                            name=p.name,
                            photo=JPEG,
                            occupation="engineer",
                            mobile="13700000000",
                            address="3 Zhongguancun Street, Haidian, Beijing",
                        )
                        for p in people
                    ],
                )
            ),
            metadata=suite.metadata(Role.EMPLOYER, channel=Channel.ONLINE, caller=EMPLOYER_ID),
            timeout=300,
        )
        print(
            f"batch of {args.people}: {answer.accepted} accepted in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        ops = suite.metadata(Role.OPS)
        while True:
            time.sleep(3)
            progress = card.GetBatch(card_pb2.GetBatchRequest(batch_id="batch-bench"), metadata=ops)
            elapsed = time.perf_counter() - started
            print(
                f"  {elapsed:6.1f} s  in progress {progress.in_progress:>6}  "
                f"completed {progress.completed:>6}  refused {progress.refused:>4}",
                flush=True,
            )
            if progress.finished:
                break
        print(f"all {args.people} sagas finished in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
