"""Identity and the bank in-process, card-service processes started and killed at will: the
deployment the reliability tests kill things in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.bank import store as bank_store
from services.bank.main import build as build_bank
from services.identity.main import build as build_identity
from services.platform import migrations
from services.platform.auth import Channel, Role
from services.platform.config import REPO_ROOT
from services.platform.db import Database, make_engine
from services.platform.slices import slices
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from tests.cardsuite import BANK, BRANCH, JPEG
from tests.support import PersonSpec, bound_port, wait_serving
from tests.trust import TestTrust


class Deployment:
    """Identity and bank in-process; card-service processes started and killed at will."""

    def __init__(
        self,
        start: Callable[..., Any],
        env: dict[str, str],
        token: Callable[..., Any],
        trust: TestTrust,
        tmp: Path,
    ) -> None:
        self.trust = trust
        self.env = {**os.environ, **env, "SSCARD_LOG_LEVEL": "WARNING"}
        self.tmp = tmp
        self.token = token
        identity = start("identity", build_identity)
        bank = start("bank", build_bank)
        wait_serving(identity.channel)
        wait_serving(bank.channel)
        self.identity = identity_pb2_grpc.IdentityServiceStub(identity.channel)
        self.bank = bank_pb2_grpc.BankServiceStub(bank.channel)
        self.bank_db: Database = bank.deps.db
        engine = make_engine(self.env["SSCARD_CARD_DB_URL"], pool_size=1)
        migrations.upgrade("card", engine)
        engine.dispose()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.bank.UpsertBranch(
            bank_pb2.UpsertBranchRequest(
                request_id="branch",
                branch=bank_pb2.Branch(bank_code=BANK, branch_id=BRANCH, name="Xidan"),
            ),
            metadata=token(roles=(Role.OPS,), caller="ops"),
        )
        self.ops = token(roles=(Role.OPS,), caller="ops")

    def online(self, person: PersonSpec) -> Any:
        """The person's own online credential."""
        return self.token(channel=Channel.ONLINE, roles=(Role.PERSON,), caller=person.person_id)

    def card_process(
        self, port: int | None = None, crash_after: str = "", crash_point: str = ""
    ) -> Any:
        """A card-service process on the suite's card port, or on ``port`` (0: any free port;
        the process reports the one it got)."""
        env = dict(self.env)
        if port is not None:
            env["SSCARD_CARD_PORT"] = str(port)
        if crash_after:
            env["SSCARD_CARD_CRASH_AFTER"] = f"application:{crash_after}"
        if crash_point:
            env["SSCARD_CARD_CRASH_AFTER"] = crash_point
        port_file = self.tmp / f"card-{len(self.processes)}.port"
        env["SSCARD_CARD_PORT_FILE"] = str(port_file)
        proc = subprocess.Popen([sys.executable, "-m", "services.card"], cwd=REPO_ROOT, env=env)
        self.processes.append(proc)
        channel = self.trust.channel(f"127.0.0.1:{bound_port(port_file, proc)}")
        wait_serving(channel, timeout=30)
        return proc, card_pb2_grpc.CardServiceStub(channel)

    def people(self, count: int) -> list[PersonSpec]:
        people = [PersonSpec() for _ in range(count)]
        imported = self.identity.ImportPersons(
            slices(
                identity_pb2.ImportPersonsRequest(
                    batch_id=f"feed-{time.monotonic_ns()}", records=[p.record() for p in people]
                )
            ),
            metadata=self.token(roles=(Role.REGISTRY,), caller="hr-feed"),
        )
        for result in imported.results:
            people[result.index].person_id = result.person_id
        assert all(p.person_id for p in people), imported
        return people

    def apply(self, card: Any, person: PersonSpec, pickup: str = BRANCH) -> str:
        answer = card.Apply(
            pb.ApplyRequest(
                request_id=f"apply-{person.number}-{pickup}",
                applicant=pb.Applicant(
                    document=person.document(),
                    document_valid_until=person.document_valid_until(),
                    name=person.name,
                    photo=JPEG,
                    occupation="nurse",
                    mobile="13912345678",
                    address="2 Financial Street, Xicheng, Beijing",
                ),
                bank_code=BANK,
                delivery=pb.DELIVERY_BRANCH_PICKUP,
                pickup_branch_id=pickup,
            ),
            metadata=self.online(person),
            timeout=10,
        )
        return str(answer.card_id)

    def settle(self, card: Any, card_ids: list[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        done: dict[str, Any] = {}
        while len(done) < len(card_ids):
            for card_id in card_ids:
                if card_id in done:
                    continue
                application = card.GetApplication(
                    pb.GetApplicationRequest(card_id=card_id), metadata=self.ops, timeout=10
                )
                if application.state in (pb.SAGA_STATE_COMPLETED, pb.SAGA_STATE_FAILED):
                    done[card_id] = application
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(card_ids) - len(done)} sagas unfinished")
            time.sleep(0.1)
        return done

    def accounts(self, status: str | None = None) -> int:
        table = bank_store.accounts
        query = select(func.count()).select_from(table)
        if status:
            query = query.where(table.c.status == status)
        with self.bank_db.reader() as session:
            return int(session.execute(query).scalar_one())

    def registered(self, person: PersonSpec) -> str:
        answer = self.identity.GetPerson(
            identity_pb2.GetPersonRequest(
                person=identity_pb2.PersonRef(document=person.document())
            ),
            metadata=self.token(roles=(Role.SERVICE,), caller="test-service"),
        )
        return str(answer.person.registered_card_id)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def killed(proc: subprocess.Popen[bytes]) -> None:
    assert proc.wait(30) == -9, "the fault injection should have SIGKILLed the process"
