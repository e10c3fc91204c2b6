"""The driver: a workload of the regulation's operations and the faults between them, drawn from
a seed, and run against a ``Cluster``.

A trace is a list of steps (plain dicts, printable and replayable). Steps name people and cards
by slot (``P3``, ``C5``), not by id, and carry their number in the drawn trace (``n``), from which
their request ids come, so any sub-list of a trace runs again: a step whose card was never made
is skipped, and a retried top-up still names its first sending. Steps are drawn one at a time
from ``random.Random(seed)`` and the driver's view of the suite (which cards it made, what it
last saw of them), so the same seed on the same build draws the same trace as long as the
services answer the same."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.type.date_pb2 import Date

from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from sscard.bank.v1 import bank_pb2, bank_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.card.v1 import card_pb2_grpc
from sscard.identity.v1 import identity_pb2, identity_pb2_grpc
from sscard.transit.v1 import transit_pb2 as tpb
from sscard.transit.v1 import transit_pb2_grpc
from tests.cardsuite import BANK, BRANCH, EMPLOYER_ID, INSTANT, JPEG, OTHER_BANK, OTHER_INSTANT
from tests.chaos.cluster import Cluster
from tests.support import PersonSpec, resident_id

Step = dict[str, Any]
MOBILE = "13812345678"
SETTLED = dt.date(2026, 11, 1)
TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
CALL_TIMEOUT = 8.0
KIOSK_TIMEOUT = 3.0
ATTEMPTS = 3

# Operations and how often they are drawn.
OPERATIONS = {
    "import": 6,
    "apply_online": 6,
    "apply_branch": 6,
    "batch": 2,
    "produce": 5,
    "collect": 6,
    "employer_collect": 2,
    "activate": 6,
    "temporary_loss": 3,
    "formal_loss": 2,
    "unlock": 3,
    "reissue": 2,
    "replace": 3,
    "top_up": 10,
    "top_up_retry": 3,
    "refund": 3,
    "credit": 4,
    "park_pass": 2,
    "cancel_district": 2,
    "cancel_bank": 2,
    "death": 1,
    "clock": 2,
}
FAULTS = {"kill": 2, "cut_db": 2, "proxy": 4}
# The operation that moves a card in this status towards use.
ADVANCE = {
    pb.CARD_STATUS_IN_PRODUCTION: "produce",
    pb.CARD_STATUS_READY: "collect",
    pb.CARD_STATUS_COLLECTED: "activate",
}


@dataclass
class Slot:
    person: str
    bank: str
    branch: str
    old: str = ""  # the card slot this card replaces
    card_id: str = ""
    status: int = 0


@dataclass
class World:
    """What the driver knows of the suite, and what it was told (acknowledged)."""

    people: dict[str, PersonSpec] = field(default_factory=dict)
    cards: dict[str, Slot] = field(default_factory=dict)
    topups: dict[str, tuple[str, int]] = field(default_factory=dict)  # acked id: card, fen
    topup_answers: dict[str, int] = field(default_factory=dict)  # acked id: entry id
    unsure_topups: dict[str, tuple[str, int]] = field(default_factory=dict)
    credits: dict[str, tuple[str, int]] = field(default_factory=dict)  # acked reference
    refunds: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # "ok", "refused", "unsure"
    down: dict[str, int] = field(default_factory=dict)  # "card/1": step it comes back at
    slow: dict[str, int] = field(default_factory=dict)  # proxy: step it heals at
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]


def generate(rng: random.Random, world: World, index: int, cluster: Cluster) -> list[Step]:
    """The next steps: the faults due to end now, then one operation or fault."""
    steps: list[Step] = []
    for target, until in sorted(world.down.items()):
        if until <= index:
            service, replica = target.split("/")
            steps.append({"op": "restart", "service": service, "replica": int(replica)})
    for name, until in sorted(world.slow.items()):
        if until <= index:
            steps.append({"op": "heal", "service": name})
    if rng.random() < 0.12:
        kind = _pick(rng, FAULTS)
        name = rng.choice(["identity", "card", "bank", "transit"])
        if kind == "kill":
            replica = rng.randrange(len(cluster.ports[name]))
            if f"{name}/{replica}" not in world.down:
                return [
                    *steps,
                    {
                        "op": "kill",
                        "service": name,
                        "replica": replica,
                        "back_after": rng.randint(0, 3),
                    },
                ]
        elif kind == "cut_db":
            return [*steps, {"op": "cut_db", "service": name}]
        elif name not in world.slow:
            mode = rng.choice(["down", "slow"])
            delay = rng.choice([0.5, 2.0, 10.0])
            return [
                *steps,
                {
                    "op": "proxy",
                    "service": name,
                    "mode": mode,
                    "delay": delay,
                    "heal_after": rng.randint(1, 4),
                },
            ]
    return [*steps, _operation(rng, world)]


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _card(
    rng: random.Random, world: World, *statuses: int, prefer: frozenset[str] = frozenset()
) -> str:
    """A card slot, preferring one last seen in one of ``statuses``, and among those one whose
    card id is in ``prefer``."""
    fitting = [s for s, c in world.cards.items() if c.status in statuses and c.card_id]
    preferred = [s for s in fitting if world.cards[s].card_id in prefer]
    pool = preferred or fitting or [s for s, c in world.cards.items() if c.card_id]
    return rng.choice(sorted(pool)) if pool else ""


def _cardless(world: World) -> list[str]:
    holders = {c.person for c in world.cards.values()}
    return sorted(p for p in world.people if p not in holders)


def _operation(rng: random.Random, world: World) -> Step:
    op = _pick(rng, OPERATIONS)
    if op == "import" or not world.people:
        return {
            "op": "import",
            "count": rng.randint(1, 3),
            "settled": rng.random() < 0.6,
            "park": rng.random() < 0.4,
            "first": len(world.people),
        }
    if op in ("apply_online", "apply_branch", "batch"):
        free = _cardless(world)
        if not free:
            return {
                "op": "import",
                "count": 2,
                "settled": True,
                "park": False,
                "first": len(world.people),
            }
        if op == "batch":
            chosen = rng.sample(free, min(len(free), 2))
            return {
                "op": op,
                "people": chosen,
                "slots": [f"C{len(world.cards) + i}" for i in range(len(chosen))],
            }
        return {
            "op": op,
            "person": rng.choice(free),
            "slot": f"C{len(world.cards)}",
            "pickup": rng.choice([INSTANT, BRANCH]) if op == "apply_online" else INSTANT,
        }
    if op == "top_up_retry":
        if world.unsure_topups:
            return {"op": op, "request_id": rng.choice(sorted(world.unsure_topups))}
        op = "top_up"
    if op == "death":
        return {"op": op, "person": rng.choice(sorted(world.people))}
    if op == "clock":
        return {"op": op, "days": rng.choice([1, 1, 3, 11, 16, 31, 45, 190])}
    wants = {
        "produce": (pb.CARD_STATUS_IN_PRODUCTION,),
        "collect": (pb.CARD_STATUS_READY,),
        "employer_collect": (pb.CARD_STATUS_READY,),
        "activate": (pb.CARD_STATUS_COLLECTED,),
        "temporary_loss": (pb.CARD_STATUS_ACTIVE,),
        "formal_loss": (pb.CARD_STATUS_ACTIVE, pb.CARD_STATUS_TEMPORARILY_LOST),
        "unlock": (pb.CARD_STATUS_TEMPORARILY_LOST, pb.CARD_STATUS_FORMALLY_LOST),
        "reissue": (pb.CARD_STATUS_FORMALLY_LOST,),
        "replace": (pb.CARD_STATUS_ACTIVE,),
        "cancel_district": (pb.CARD_STATUS_ACTIVE, pb.CARD_STATUS_CANCELLATION_DUE),
        "cancel_bank": (
            pb.CARD_STATUS_ACTIVE,
            pb.CARD_STATUS_CANCELLATION_DUE,
            pb.CARD_STATUS_SS_CANCELLED,
        ),
    }.get(op, (pb.CARD_STATUS_ACTIVE, pb.CARD_STATUS_COLLECTED))
    # A cancellation mostly finds money in the wallet: the refund must arrive before the
    # account closes (A19.1).
    funded = frozenset(card_id for card_id, _ in world.topups.values())
    slot = _card(rng, world, *wants, prefer=funded if op.startswith("cancel") else frozenset())
    if slot and world.cards[slot].status not in wants:
        # No card fits: move one along its life instead, so that cards reach use.
        movable = sorted(s for s, c in world.cards.items() if c.card_id and c.status in ADVANCE)
        if movable:
            slot = rng.choice(movable)
            op = ADVANCE[world.cards[slot].status]
    if not slot:
        return {
            "op": "import",
            "count": 1,
            "settled": True,
            "park": True,
            "first": len(world.people),
        }
    step: Step = {"op": op, "card": slot}
    if op in ("reissue", "replace"):
        step["slot"] = f"C{len(world.cards)}"
    if op == "replace":
        step["bank_change"] = rng.random() < 0.4
    if op == "collect":
        step["move_park_pass"] = rng.random() < 0.5
    if op in ("top_up", "refund", "credit"):
        step["yuan"] = rng.choice([1, 10, 50, 100, 200]) if op != "credit" else rng.randint(1, 900)
    if op == "top_up":
        step["resend"] = rng.choice([0, 0, 1, 2])
    return step


class Driver:
    """Runs steps against the cluster and keeps the world's log."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.world = World()
        self._tokens: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
        self._channels = {name: cluster.channel(name) for name in ("identity", "bank", "transit")}
        replicas = range(len(cluster.ports["card"]))
        self._card_channels = [cluster.channel("card", r) for r in replicas]
        self._round = itertools.count()
        self.identity = identity_pb2_grpc.IdentityServiceStub(self._channels["identity"])
        self.bank = bank_pb2_grpc.BankServiceStub(self._channels["bank"])
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self._channels["bank"])
        self.transit = transit_pb2_grpc.TransitServiceStub(self._channels["transit"])
        self.ops = self.token(roles=(Role.OPS,), caller="ops")
        self.service = self.token(roles=(Role.SERVICE,), caller="chaos-service")
        self.factory = self.token(roles=(Role.FACTORY,), caller="card-factory")
        for bank_code, branch, instant in (
            (BANK, BRANCH, False),
            (BANK, INSTANT, True),
            (OTHER_BANK, OTHER_INSTANT, True),
        ):
            self.call(
                "branch",
                lambda t, b=bank_code, br=branch, i=instant: self.bank.UpsertBranch(
                    bank_pb2.UpsertBranchRequest(
                        request_id=f"branch-{br}",
                        branch=bank_pb2.Branch(bank_code=b, branch_id=br, name=br, instant=i),
                    ),
                    metadata=self.ops,
                    timeout=t,
                ),
            )

    def close(self) -> None:
        for channel in [*self._channels.values(), *self._card_channels]:
            channel.close()

    # Credentials and stubs.

    def token(
        self,
        channel: Channel = Channel.INTERNAL,
        roles: tuple[Role, ...] = (Role.SERVICE,),
        caller: str = "chaos",
        **claims: Any,
    ) -> list[tuple[str, str]]:
        key = (channel, roles, caller, tuple(sorted(claims.items())))
        if key not in self._tokens:
            jwt = self.cluster.trust.token(channel, roles, caller, **claims)
            self._tokens[key] = [("authorization", f"Bearer {jwt}")]
        return self._tokens[key]

    def online(self, person: PersonSpec) -> list[tuple[str, str]]:
        return self.token(Channel.ONLINE, (Role.PERSON,), person.person_id)

    def counter(self, channel: Channel, **claims: Any) -> list[tuple[str, str]]:
        return self.token(channel, (Role.COUNTER,), f"{channel.value}-client", **claims)

    def branch(self, bank: str, branch: str) -> list[tuple[str, str]]:
        return self.counter(Channel.BANK_BRANCH, bank_code=bank, outlet_id=branch)

    def card(self) -> card_pb2_grpc.CardServiceStub:
        """Round-robin over the card service's replicas."""
        channels = self._card_channels
        return card_pb2_grpc.CardServiceStub(channels[next(self._round) % len(channels)])

    def ops_stub(self) -> card_pb2_grpc.OpsServiceStub:
        channels = self._card_channels
        return card_pb2_grpc.OpsServiceStub(channels[next(self._round) % len(channels)])

    # Calls.

    def call(
        self,
        label: str,
        rpc: Callable[[float], Any],
        timeout: float = CALL_TIMEOUT,
        attempts: int = ATTEMPTS,
    ) -> tuple[str, Any]:
        """``ok`` and the answer, ``refused`` and the reason, or ``unsure`` after transport
        failures: the same request (same request id) sent again, as a client retries."""
        for attempt in range(attempts):
            try:
                answer = rpc(timeout)
                self.world.outcomes["ok"] += 1
                return "ok", answer
            except grpc.RpcError as error:
                code = error.code()
                if code in NEVER:
                    self.world.violations.append(
                        f"{label}: answered {code.name}: {error.details()}"
                    )
                    return "refused", code.name
                if code not in TRANSIENT:
                    reason = from_rpc_error(error).reason or code.name
                    self.world.outcomes[f"refused {label} {reason}"] += 1
                    return "refused", reason
                time.sleep(0.3 * (attempt + 1))
        self.world.outcomes["unsure"] += 1
        return "unsure", None

    def read(self, rpc: Callable[[float], Any]) -> Any:
        """A read the checks need: retried until it answers (faults are healed by then)."""
        for attempt in range(40):
            try:
                return rpc(CALL_TIMEOUT)
            except grpc.RpcError as error:
                if error.code() not in TRANSIENT or attempt == 39:
                    raise
                time.sleep(1)
        return None

    # Steps.

    def run(self, step: Step) -> bool:
        """Runs the step, unless what it needs was never made (a replayed trace may lack the
        person, the card or the top-up to resend): whether it ran."""
        people = [step["person"]] if "person" in step else step.get("people", [])
        if not all(p in self.world.people for p in people):
            return False
        if "card" in step and self._card_of(step) is None:
            return False
        if step["op"] == "top_up_retry" and step["request_id"] not in self.world.unsure_topups:
            return False
        getattr(self, "_" + step["op"])(step, f"s{step['n']}")
        return True

    def _card_of(self, step: Step) -> Slot | None:
        slot = self.world.cards.get(step.get("card", ""))
        return slot if slot is not None and slot.card_id else None

    def _seen(self, slot: Slot, outcome: tuple[str, Any]) -> None:
        if outcome[0] == "ok" and hasattr(outcome[1], "status"):
            slot.status = outcome[1].status

    def _import(self, step: Step, rid: str) -> None:
        people = {}
        for i in range(step["count"]):
            n = next(self.world.counter)
            people[f"P{step['first'] + i}"] = PersonSpec(
                number=resident_id(birth=dt.date(1960, 1, 1) + dt.timedelta(days=n), seq=101),
                name="李四",
                settled=SETTLED if step["settled"] else None,
                preferential=(identity_pb2.PREFERENTIAL_TREATMENT_PARK_PASS,)
                if step["park"]
                else (),
            )
        outcome = self.call(
            "import",
            lambda t: self.identity.ImportPersons(
                slices(
                    identity_pb2.ImportPersonsRequest(
                        batch_id=rid, records=[p.record() for p in people.values()]
                    )
                ),
                metadata=self.token(roles=(Role.REGISTRY,), caller="hr-feed"),
                timeout=t,
            ),
        )
        if outcome[0] != "ok":
            return
        ids = list(people)
        for result in outcome[1].results:
            if result.person_id:
                people[ids[result.index]].person_id = result.person_id
        self.world.people.update({k: p for k, p in people.items() if p.person_id})

    def applicant(self, person: PersonSpec) -> pb.Applicant:
        return pb.Applicant(
            document=person.document(),
            document_valid_until=person.document_valid_until(),
            name=person.name,
            photo=JPEG,
            occupation="nurse",
            mobile=MOBILE,
            address="2 Financial Street, Xicheng, Beijing",
        )

    def _apply(self, step: Step, rid: str, metadata: Any) -> None:
        person = self.world.people[step["person"]]
        outcome = self.call(
            step["op"],
            lambda t: self.card().Apply(
                pb.ApplyRequest(
                    request_id=rid,
                    applicant=self.applicant(person),
                    bank_code=BANK,
                    delivery=pb.DELIVERY_BRANCH_PICKUP,
                    pickup_branch_id=step["pickup"],
                ),
                metadata=metadata,
                timeout=t,
            ),
        )
        if outcome[0] == "ok":
            self.world.cards[step["slot"]] = Slot(
                step["person"],
                BANK,
                step["pickup"],
                card_id=outcome[1].card_id,
                status=pb.CARD_STATUS_APPLIED,
            )

    def _apply_online(self, step: Step, rid: str) -> None:
        self._apply(step, rid, self.online(self.world.people[step["person"]]))

    def _apply_branch(self, step: Step, rid: str) -> None:
        self._apply(step, rid, self.branch(BANK, INSTANT))

    def _batch(self, step: Step, rid: str) -> None:
        people = [self.world.people[p] for p in step["people"]]
        outcome = self.call(
            "batch",
            lambda t: self.card().ApplyBatch(
                slices(
                    pb.ApplyBatchRequest(
                        request_id=rid,
                        employer=pb.Employer(employer_id=EMPLOYER_ID, name="Beijing Example Co."),
                        bank_code=BANK,
                        pickup_branch_id=INSTANT,
                        applicants=[self.applicant(p) for p in people],
                    )
                ),
                metadata=self.token(Channel.ONLINE, (Role.EMPLOYER,), EMPLOYER_ID),
                timeout=t,
            ),
        )
        if outcome[0] == "ok":
            for result in outcome[1].results:
                if result.card_id:
                    self.world.cards[step["slots"][result.index]] = Slot(
                        step["people"][result.index],
                        BANK,
                        INSTANT,
                        card_id=result.card_id,
                        status=pb.CARD_STATUS_APPLIED,
                    )

    def _refresh(self, slot: Slot) -> None:
        self._seen(
            slot,
            self.call(
                "get",
                lambda t: self.card().GetCard(
                    pb.GetCardRequest(card_id=slot.card_id), metadata=self.ops, timeout=t
                ),
            ),
        )

    def _produce(self, step: Step, rid: str) -> None:
        if not (slot := self._card_of(step)):
            return
        order = self.call(
            "order",
            lambda t: self.bank.GetProductionOrder(
                bank_pb2.GetProductionOrderRequest(card_id=slot.card_id),
                metadata=self.factory,
                timeout=t,
            ),
        )
        if order[0] == "ok":
            self.call(
                "produce",
                lambda t: self.bank.MarkProduced(
                    bank_pb2.MarkProducedRequest(request_id=rid, order_id=order[1].order_id),
                    metadata=self.factory,
                    timeout=t,
                ),
            )
        self._refresh(slot)

    def _collect(self, step: Step, rid: str) -> None:
        if not (slot := self._card_of(step)):
            return
        person = self.world.people[slot.person]
        old = self.world.cards.get(slot.old)
        self._seen(
            slot,
            self.call(
                "collect",
                lambda t: self.card().RecordCollection(
                    pb.RecordCollectionRequest(
                        request_id=rid,
                        card_id=slot.card_id,
                        method=pb.COLLECTION_METHOD_AT_BRANCH,
                        document=person.document(),
                        old_card_id=old.card_id if old else "",
                        move_park_pass=step["move_park_pass"],
                    ),
                    metadata=self.branch(slot.bank, slot.branch),
                    timeout=t,
                ),
            ),
        )

    def _employer_collect(self, step: Step, rid: str) -> None:
        if not (slot := self._card_of(step)):
            return
        self._seen(
            slot,
            self.call(
                "employer_collect",
                lambda t: self.card().RecordCollection(
                    pb.RecordCollectionRequest(
                        request_id=rid,
                        card_id=slot.card_id,
                        method=pb.COLLECTION_METHOD_BY_EMPLOYER,
                        employer=pb.EmployerDocuments(
                            licence_number=EMPLOYER_ID, legal_representative=True
                        ),
                    ),
                    metadata=self.branch(slot.bank, slot.branch),
                    timeout=t,
                ),
            ),
        )

    def _card_request(self, step: Step, rid: str, method: str, request: Any, metadata: Any) -> None:
        if not (slot := self._card_of(step)):
            return
        self._seen(
            slot,
            self.call(
                method,
                lambda t: getattr(self.card(), method)(request, metadata=metadata, timeout=t),
            ),
        )

    def _person(self, step: Step) -> tuple[Slot, PersonSpec] | None:
        if not (slot := self._card_of(step)):
            return None
        return slot, self.world.people[slot.person]

    def _activate(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            self._card_request(
                step,
                rid,
                "ActivateCard",
                pb.ActivateCardRequest(
                    request_id=rid, card_id=slot.card_id, document=person.document()
                ),
                self.online(person),
            )

    def _temporary_loss(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            self._card_request(
                step,
                rid,
                "ReportTemporaryLoss",
                pb.ReportLossRequest(
                    request_id=rid, card_id=slot.card_id, document=person.document()
                ),
                self.online(person),
            )

    def _formal_loss(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            self._card_request(
                step,
                rid,
                "ReportFormalLoss",
                pb.ReportLossRequest(
                    request_id=rid, card_id=slot.card_id, document=person.document()
                ),
                self.counter(Channel.DISTRICT_OUTLET),
            )

    def _unlock(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            self._card_request(
                step,
                rid,
                "UnlockCard",
                pb.UnlockCardRequest(
                    request_id=rid, card_id=slot.card_id, document=person.document()
                ),
                self.counter(Channel.DISTRICT_OUTLET),
            )

    def _new_card(
        self, step: Step, slot: Slot, outcome: tuple[str, Any], bank: str, branch: str
    ) -> None:
        if outcome[0] == "ok":
            self.world.cards[step["slot"]] = Slot(
                slot.person,
                bank,
                branch,
                old=step["card"],
                card_id=outcome[1].card_id,
                status=pb.CARD_STATUS_APPLIED,
            )

    def _reissue(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            outcome = self.call(
                "reissue",
                lambda t: self.card().ReissueCard(
                    pb.ReissueCardRequest(
                        request_id=rid,
                        card_id=slot.card_id,
                        document=person.document(),
                        delivery=pb.DELIVERY_BRANCH_PICKUP,
                        pickup_branch_id=INSTANT,
                    ),
                    metadata=self.online(person),
                    timeout=t,
                ),
            )
            self._new_card(step, slot, outcome, BANK, INSTANT)

    def _replace(self, step: Step, rid: str) -> None:
        if found := self._person(step):
            slot, person = found
            bank, branch = (
                (OTHER_BANK, OTHER_INSTANT)
                if step["bank_change"]
                else (slot.bank, INSTANT if slot.bank == BANK else OTHER_INSTANT)
            )
            outcome = self.call(
                "replace",
                lambda t: self.card().ReplaceCard(
                    pb.ReplaceCardRequest(
                        request_id=rid,
                        card_id=slot.card_id,
                        document=person.document(),
                        name=person.name,
                        reason=pb.REPLACEMENT_REASON_DAMAGED_FACE,
                        delivery=pb.DELIVERY_BRANCH_PICKUP,
                        pickup_branch_id=branch,
                        new_bank_code=OTHER_BANK if step["bank_change"] else "",
                    ),
                    metadata=self.online(person),
                    timeout=t,
                ),
            )
            self._new_card(step, slot, outcome, bank, branch)

    def _cancel(self, step: Step, rid: str, metadata: Any, destination: str) -> None:
        if found := self._person(step):
            slot, person = found
            self._card_request(
                step,
                rid,
                "CancelCard",
                pb.CancelCardRequest(
                    request_id=rid,
                    card_id=slot.card_id,
                    document=person.document(),
                    payout_destination=destination,
                ),
                metadata,
            )

    def _cancel_district(self, step: Step, rid: str) -> None:
        self._cancel(step, rid, self.counter(Channel.DISTRICT_OUTLET), "")

    def _cancel_bank(self, step: Step, rid: str) -> None:
        if slot := self._card_of(step):
            self._cancel(step, rid, self.branch(slot.bank, slot.branch), "cash")

    def _send_top_up(self, request_id: str, card_id: str, fen: int, times: int) -> None:
        kiosk = self.counter(Channel.TRANSIT_OUTLET, outlet_id="KIOSK-7")
        request = tpb.TopUpRequest(request_id=request_id, card_id=card_id, amount_fen=fen)
        for _ in range(times):
            outcome = self.call(
                "top_up",
                lambda t: self.transit.TopUp(request, metadata=kiosk, timeout=t),
                timeout=KIOSK_TIMEOUT,
            )
            if outcome[0] == "unsure":
                self.world.unsure_topups[request_id] = (card_id, fen)
            if outcome[0] != "ok":
                continue
            self.world.unsure_topups.pop(request_id, None)
            entry = outcome[1].entry_id
            first = self.world.topup_answers.setdefault(request_id, entry)
            if first != entry:
                self.world.violations.append(
                    f"top-up {request_id} resent: answered entry {entry}, first {first}"
                )
            self.world.topups[request_id] = (card_id, fen)

    def _top_up(self, step: Step, rid: str) -> None:
        if slot := self._card_of(step):
            self._send_top_up(rid, slot.card_id, step["yuan"] * 100, 1 + step["resend"])

    def _top_up_retry(self, step: Step, rid: str) -> None:
        request_id = step["request_id"]
        self._send_top_up(request_id, *self.world.unsure_topups[request_id], times=1)

    def _refund(self, step: Step, rid: str) -> None:
        if slot := self._card_of(step):
            outcome = self.call(
                "refund",
                lambda t: self.transit.Refund(
                    tpb.RefundRequest(
                        request_id=rid, card_id=slot.card_id, amount_fen=step["yuan"] * 100
                    ),
                    metadata=self.branch(slot.bank, slot.branch),
                    timeout=t,
                ),
            )
            if outcome[0] == "ok" and outcome[1].refund_id:
                self.world.refunds.add(outcome[1].refund_id)

    def _credit(self, step: Step, rid: str) -> None:
        if slot := self._card_of(step):
            reference = f"pension-{rid}"
            outcome = self.call(
                "credit",
                lambda t: self.ledger.Credit(
                    ledger_pb2.CreditRequest(
                        request_id=rid,
                        card_id=slot.card_id,
                        amount_fen=step["yuan"] * 100,
                        source=ledger_pb2.ENTRY_SOURCE_NON_COUNTER,
                        reference=reference,
                        counterparty="pension-fund",
                    ),
                    metadata=self.service,
                    timeout=t,
                ),
            )
            if outcome[0] == "ok":
                self.world.credits[reference] = (slot.card_id, step["yuan"] * 100)

    def _park_pass(self, step: Step, rid: str) -> None:
        if slot := self._card_of(step):
            self.call(
                "park_pass",
                lambda t: self.transit.PurchaseParkPass(
                    tpb.PurchaseParkPassRequest(request_id=rid, card_id=slot.card_id),
                    metadata=self.counter(Channel.PARK_OUTLET, outlet_id="PARK-1"),
                    timeout=t,
                ),
            )

    def _death(self, step: Step, rid: str) -> None:
        person = self.world.people.get(step["person"])
        if person is not None:
            self.call(
                "death",
                lambda t: self.identity.RecordDeath(
                    identity_pb2.RecordDeathRequest(
                        request_id=rid,
                        person=identity_pb2.PersonRef(document=person.document()),
                        date_of_death=Date(year=2026, month=11, day=20),
                    ),
                    metadata=self.token(roles=(Role.REGISTRY,), caller="hr-feed"),
                    timeout=t,
                ),
            )

    def _clock(self, step: Step, rid: str) -> None:
        self.cluster.clock.advance(dt.timedelta(days=step["days"]))

    # Faults.

    def _kill(self, step: Step, rid: str) -> None:
        self.cluster.kill(step["service"], step["replica"])
        self.world.down[f"{step['service']}/{step['replica']}"] = step["n"] + 1 + step["back_after"]

    def _restart(self, step: Step, rid: str) -> None:
        self.world.down.pop(f"{step['service']}/{step['replica']}", None)
        self.cluster.restart(step["service"], step["replica"])

    def _cut_db(self, step: Step, rid: str) -> None:
        if self.cluster.pg_url:
            self.cluster.cut_database(step["service"])
        else:  # SQLite: no server connections to cut; the process restarts instead
            self.cluster.kill(step["service"])
            self.cluster.restart(step["service"])

    def _proxy(self, step: Step, rid: str) -> None:
        self.cluster.proxies[step["service"]].set(step["mode"], step["delay"])
        self.world.slow[step["service"]] = step["n"] + 1 + step["heal_after"]

    def _heal(self, step: Step, rid: str) -> None:
        self.world.slow.pop(step["service"], None)
        self.cluster.proxies[step["service"]].set("ok")
