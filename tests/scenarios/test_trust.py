"""Trust: every caller is who an issuer vouches for, acts only within its registration, and a
person reaches only their own cards. Each attack found against the earlier shared-secret
credentials has a test named for it, over real gRPC against the real services."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.platform import tokens
from services.platform.auth import Channel, ClientKind, Role
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from sscard.bank.v1 import ledger_pb2, ledger_pb2_grpc
from sscard.card.v1 import card_pb2 as pb
from sscard.transit.v1 import transit_pb2, transit_pb2_grpc
from tests.cardsuite import BANK, EMPLOYER_ID, OTHER_BANK, Suite, active_card, rpc_error
from tests.trust import TEST_ISSUER, TestTrust

YUAN = 100


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    error = rpc_error(call)
    return error.code(), from_rpc_error(error).reason


def status_of(suite: Suite, card_id: str, metadata: Any) -> Any:
    return suite.card.QueryStatus(pb.QueryStatusRequest(card_id=card_id), metadata=metadata)


@pytest.fixture
def victim(suite: Suite) -> tuple[str, Any]:
    """A person with an active card, whom the attacker is not."""
    return active_card(suite)


@pytest.fixture
def attacker(suite: Suite) -> Any:
    """Another registered person, signed in to the online portal with their own credential."""
    return suite.person()


class TestRolesAreNarrow:
    def test_the_card_factory_cannot_credit_an_account(
        self, suite: Suite, victim: tuple[str, Any]
    ) -> None:
        card_id, _ = victim
        ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
        request = ledger_pb2.CreditRequest(
            request_id="factory-credit",
            card_id=card_id,
            amount_fen=1_000 * YUAN,
            source=ledger_pb2.ENTRY_SOURCE_NON_COUNTER,
        )
        assert refusal(lambda: ledger.Credit(request, metadata=suite.factory)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_NOT_ALLOWED",
        )

    def test_an_online_credential_claiming_the_service_role_is_refused(
        self, suite: Suite, trust: TestTrust, victim: tuple[str, Any]
    ) -> None:
        card_id, _person = victim
        trust.register(
            "portal", ClientKind.ONLINE_PORTAL, {Channel.ONLINE}, {Role.PERSON, Role.PORTAL}
        )
        forged = trust.token(
            Channel.ONLINE, (Role.SERVICE,), "portal", client_id="portal", register=False
        )
        ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
        request = ledger_pb2.CreditRequest(
            request_id="online-credit",
            card_id=card_id,
            amount_fen=1_000_000 * YUAN,
            source=ledger_pb2.ENTRY_SOURCE_NON_COUNTER,
        )
        assert refusal(lambda: ledger.Credit(request, metadata=bearer(forged))) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CLIENT_ROLE_NOT_REGISTERED",
        )

    def test_a_credential_with_no_role_cannot_mark_a_card_delivered(
        self, suite: Suite, trust: TestTrust, attacker: Any
    ) -> None:
        started = suite.apply(attacker, metadata=suite.branch())
        suite.settle(started.card_id)
        no_role = suite.token(channel=Channel.INTERNAL, roles=(), caller="logistics")
        request = pb.RecordCollectionRequest(
            request_id="mailed", card_id=started.card_id, method=pb.COLLECTION_METHOD_MAIL_SENT
        )
        assert refusal(lambda: suite.card.RecordCollection(request, metadata=no_role)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_NOT_ALLOWED",
        )

    def test_a_branch_credential_with_no_role_cannot_refund_a_wallet(
        self, suite: Suite, victim: tuple[str, Any]
    ) -> None:
        card_id, _ = victim
        transit = transit_pb2_grpc.TransitServiceStub(suite.transit_server.channel)
        no_role = suite.token(
            channel=Channel.BANK_BRANCH, roles=(), caller="branch", bank_code=BANK
        )
        request = transit_pb2.RefundRequest(request_id="r", card_id=card_id, amount_fen=YUAN)
        assert refusal(lambda: transit.Refund(request, metadata=no_role)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ROLE_NOT_ALLOWED",
        )

    def test_a_bank_core_system_books_only_its_own_banks_accounts(
        self, suite: Suite, victim: tuple[str, Any]
    ) -> None:
        card_id, _ = victim  # an ICBC card
        ledger = ledger_pb2_grpc.LedgerServiceStub(suite.bank_server.channel)
        other = suite.token(
            channel=Channel.INTERNAL, roles=(Role.BANK,), caller="boc-core", bank_code=OTHER_BANK
        )
        own = suite.token(
            channel=Channel.INTERNAL, roles=(Role.BANK,), caller="icbc-core", bank_code=BANK
        )

        def credit(metadata: Any, rid: str) -> Any:
            return ledger.Credit(
                ledger_pb2.CreditRequest(
                    request_id=rid,
                    card_id=card_id,
                    amount_fen=100 * YUAN,
                    source=ledger_pb2.ENTRY_SOURCE_NON_COUNTER,
                ),
                metadata=metadata,
            )

        assert refusal(lambda: credit(other, "boc")) == (
            grpc.StatusCode.NOT_FOUND,
            "ACCOUNT_NOT_FOUND",
        )
        assert credit(own, "icbc").amount_fen == 100 * YUAN


class TestPeopleReachOnlyTheirOwnCards:
    """Another person's card answers exactly as a card that does not exist."""

    def _as_missing(self, call: Any, missing: Any) -> None:
        assert refusal(call) == refusal(missing) == (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")

    def test_query_status_by_another_persons_document_finds_nothing(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any
    ) -> None:
        _, person = victim
        mine = suite.at(Channel.ONLINE, attacker)
        self._as_missing(
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(document=person.document()), metadata=mine
            ),
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(document=attacker.document()), metadata=mine
            ),
        )

    def test_another_persons_card_cannot_be_replaced_to_another_bank(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any
    ) -> None:
        card_id, _person = victim
        mine = suite.at(Channel.ONLINE, attacker)

        def replace(target: str) -> Any:
            return suite.card.ReplaceCard(
                pb.ReplaceCardRequest(
                    request_id=suite.rid("replace"),
                    card_id=target,
                    reason=pb.REPLACEMENT_REASON_BASIC_INFO_CHANGED,
                    new_bank_code=OTHER_BANK,
                    document=attacker.document(),
                    delivery=pb.DELIVERY_BRANCH_PICKUP,
                    pickup_branch_id="BOC-0001",
                ),
                metadata=mine,
            )

        self._as_missing(lambda: replace(card_id), lambda: replace("card-does-not-exist"))
        assert status_of(suite, card_id, suite.ops).status == pb.CARD_STATUS_ACTIVE

    def test_a_replacement_for_changed_basic_information_needs_the_holders_document(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any
    ) -> None:
        """A16.2 / A17.2: even at the issuing bank's counter, the holder's current document."""
        card_id, _ = victim
        answer = suite.card.ReplaceCard(
            pb.ReplaceCardRequest(
                request_id=suite.rid("replace"),
                card_id=card_id,
                reason=pb.REPLACEMENT_REASON_BASIC_INFO_CHANGED,
                document=attacker.document(),  # not the holder's
                delivery=pb.DELIVERY_BRANCH_PICKUP,
                pickup_branch_id="ICBC-0101",
            ),
            metadata=suite.branch(),
        )
        application = suite.settle(answer.card_id)
        assert application.state == pb.SAGA_STATE_FAILED
        assert application.refusal_reason == "NOT_THE_APPLICANT"
        assert status_of(suite, card_id, suite.ops).status == pb.CARD_STATUS_ACTIVE

    @pytest.mark.parametrize(
        "method",
        ["ResetServicePassword", "UpdateContactInfo", "ReportTemporaryLoss", "GetCard"],
    )
    def test_another_persons_card_cannot_be_changed_or_read(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any, method: str
    ) -> None:
        card_id, person = victim
        mine = suite.at(Channel.ONLINE, attacker)
        requests: dict[str, Any] = {
            "ResetServicePassword": lambda c: pb.ResetServicePasswordRequest(
                request_id=suite.rid(), card_id=c, document=person.document(), new_password="802461"
            ),
            "UpdateContactInfo": lambda c: pb.UpdateContactInfoRequest(
                request_id=suite.rid(), card_id=c, document=person.document(), mobile="13900000000"
            ),
            "ReportTemporaryLoss": lambda c: pb.ReportLossRequest(
                request_id=suite.rid(), card_id=c, document=person.document()
            ),
            "GetCard": lambda c: pb.GetCardRequest(card_id=c, include_history=True),
        }
        rpc = getattr(suite.card, method)
        self._as_missing(
            lambda: rpc(requests[method](card_id), metadata=mine),
            lambda: rpc(requests[method]("card-does-not-exist"), metadata=mine),
        )
        assert status_of(suite, card_id, suite.ops).status == pb.CARD_STATUS_ACTIVE

    def test_a_person_reads_their_own_card(self, suite: Suite, victim: tuple[str, Any]) -> None:
        card_id, person = victim
        assert (
            status_of(suite, card_id, suite.at(Channel.ONLINE, person)).status
            == pb.CARD_STATUS_ACTIVE
        )

    def test_the_transit_app_reads_only_its_persons_wallet(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any
    ) -> None:
        card_id, person = victim
        transit = transit_pb2_grpc.TransitServiceStub(suite.transit_server.channel)
        theirs = suite.at(Channel.TRANSIT_APP, attacker)
        own = suite.at(Channel.TRANSIT_APP, person)
        assert transit.GetBalance(
            transit_pb2.GetBalanceRequest(card_id=card_id), metadata=own
        ).card_id == (card_id)
        for call in (
            lambda: transit.GetBalance(
                transit_pb2.GetBalanceRequest(card_id=card_id), metadata=theirs
            ),
            lambda: transit.ListTransactions(
                transit_pb2.ListTransactionsRequest(card_id=card_id), metadata=theirs
            ),
        ):
            assert refusal(call) == (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")

    def test_a_person_applies_only_with_their_own_document(
        self, suite: Suite, victim: tuple[str, Any], attacker: Any
    ) -> None:
        """A5.1: an online application is the applicant's own."""
        other = suite.person()
        started = suite.apply(other, metadata=suite.at(Channel.ONLINE, attacker))
        application = suite.settle(started.card_id)
        assert (application.state, application.refusal_reason) == (
            pb.SAGA_STATE_FAILED,
            "NOT_THE_APPLICANT",
        )
        assert suite.registered_card(other) == ""


class TestClaimsHygiene:
    def _call(self, suite: Suite, metadata: Any) -> tuple[grpc.StatusCode, str]:
        return refusal(
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(card_id="card-x"), metadata=metadata
            )
        )

    def test_a_token_valid_for_a_hundred_years_is_refused(
        self, suite: Suite, trust: TestTrust
    ) -> None:
        token = trust.token(
            Channel.DISTRICT_OUTLET, (Role.COUNTER,), "outlet", ttl=dt.timedelta(days=36_500)
        )
        assert self._call(suite, bearer(token)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIAL_TOO_LONG_LIVED",
        )

    def test_a_persons_session_lives_at_most_an_hour(self, suite: Suite, trust: TestTrust) -> None:
        person = suite.person()
        token = trust.token(
            Channel.ONLINE, (Role.PERSON,), person.person_id, ttl=dt.timedelta(hours=2)
        )
        assert self._call(suite, bearer(token))[1] == "CREDENTIAL_TOO_LONG_LIVED"

    def test_an_empty_subject_is_refused_so_no_callers_share_a_scope(
        self, suite: Suite, trust: TestTrust
    ) -> None:
        trust.register(
            "outlet", ClientKind.DISTRICT_OUTLET_SYSTEM, {Channel.DISTRICT_OUTLET}, {Role.COUNTER}
        )
        now = int(time.time())
        claims = {
            "iss": TEST_ISSUER,
            "aud": "sscard",
            "sub": "",
            "client_id": "outlet",
            "iat": now,
            "exp": now + 600,
            "channel": "DISTRICT_OUTLET",
            "roles": ["counter"],
        }
        token = self._sign(trust, claims)
        assert self._call(suite, bearer(token)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CLAIM_INVALID",
        )

    def test_a_claim_of_the_wrong_type_is_refused_naming_it(
        self, suite: Suite, trust: TestTrust
    ) -> None:
        trust.register(
            "outlet", ClientKind.DISTRICT_OUTLET_SYSTEM, {Channel.DISTRICT_OUTLET}, {Role.COUNTER}
        )
        now = int(time.time())
        claims = {
            "iss": TEST_ISSUER,
            "aud": "sscard",
            "sub": "outlet",
            "iat": now,
            "exp": now + 600,
            "channel": "DISTRICT_OUTLET",
            "roles": "counter",
        }
        error = rpc_error(
            lambda: suite.card.QueryStatus(
                pb.QueryStatusRequest(card_id="card-x"), metadata=bearer(self._sign(trust, claims))
            )
        )
        decoded = from_rpc_error(error)
        assert (error.code(), decoded.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CLAIM_INVALID")
        assert decoded.metadata["claim"] == "roles"

    def test_two_authorization_headers_are_refused(self, suite: Suite) -> None:
        ops = suite.ops
        counter = suite.at(Channel.DISTRICT_OUTLET)
        assert self._call(suite, [*counter, *ops]) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "DUPLICATE_CREDENTIAL",
        )

    def test_an_unknown_issuer_and_an_unknown_key_are_refused(
        self, suite: Suite, trust: TestTrust, tmp_path: Any
    ) -> None:
        stranger = tmp_path / "stranger.pem"
        tokens.ensure_issuer(stranger, tmp_path / "elsewhere", "stranger")
        unknown_issuer = tokens.Signer("stranger", stranger).mint("ops", Channel.INTERNAL)
        unknown_key = tokens.Signer(TEST_ISSUER, stranger).mint("ops", Channel.INTERNAL)
        assert self._call(suite, bearer(unknown_issuer)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "UNKNOWN_ISSUER",
        )
        assert self._call(suite, bearer(unknown_key)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "UNKNOWN_KEY",
        )

    def test_a_claim_outside_the_registration_is_refused_naming_it(
        self, suite: Suite, trust: TestTrust
    ) -> None:
        trust.register(
            "xc-outlets",
            ClientKind.DISTRICT_OUTLET_SYSTEM,
            {Channel.DISTRICT_OUTLET},
            {Role.COUNTER},
            outlets={"XC-*"},
        )
        elsewhere = trust.token(
            Channel.DISTRICT_OUTLET,
            (Role.COUNTER,),
            "xc-outlets",
            outlet_id="HD-01",
            register=False,
        )
        assert self._call(suite, bearer(elsewhere)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CLIENT_OUTLET_NOT_REGISTERED",
        )

    @staticmethod
    def _sign(trust: TestTrust, claims: dict[str, Any]) -> str:
        key = tokens.load_private_key(trust.key_file(TEST_ISSUER))
        return jwt.encode(
            claims, key, algorithm="EdDSA", headers={"kid": tokens.public_jwk(key)["kid"]}
        )


class TestOperationsWithoutRestart:
    def test_a_client_is_added_then_disabled_and_a_key_rotated_without_a_restart(
        self, suite: Suite, trust: TestTrust
    ) -> None:
        def ask(token: str) -> Any:
            return suite.card.QueryStatus(
                pb.QueryStatusRequest(card_id="card-none"), metadata=bearer(token)
            )

        trust.register(
            "new-outlets",
            ClientKind.DISTRICT_OUTLET_SYSTEM,
            {Channel.DISTRICT_OUTLET},
            {Role.COUNTER},
        )
        token = trust.token(Channel.DISTRICT_OUTLET, (Role.COUNTER,), "new-outlets", register=False)
        assert refusal(lambda: ask(token))[1] == "CARD_NOT_FOUND"  # admitted: the card is absent

        trust.set_enabled("new-outlets", False)
        assert refusal(lambda: ask(token)) == (grpc.StatusCode.UNAUTHENTICATED, "CLIENT_DISABLED")
        trust.set_enabled("new-outlets", True)

        old_kid = tokens.public_jwk(tokens.load_private_key(trust.key_file(TEST_ISSUER)))["kid"]
        new_kid = tokens.rotate(trust.key_file(TEST_ISSUER), trust.trust_dir, TEST_ISSUER)
        fresh = trust.token(Channel.DISTRICT_OUTLET, (Role.COUNTER,), "new-outlets", register=False)
        assert jwt.get_unverified_header(fresh)["kid"] == new_kid
        assert refusal(lambda: ask(fresh))[1] == "CARD_NOT_FOUND"  # the new key is honoured
        assert refusal(lambda: ask(token))[1] == "CARD_NOT_FOUND"  # and the old one, until retired
        assert tokens.retire(trust.trust_dir, TEST_ISSUER, old_kid)
        assert refusal(lambda: ask(token)) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_KEY")
        assert refusal(lambda: ask(fresh))[1] == "CARD_NOT_FOUND"


def test_the_services_hold_only_public_keys(trust: TestTrust) -> None:
    """No file in the services' trust directory can sign: every key published there is public."""
    for path in trust.trust_dir.iterdir():
        text = path.read_text()
        assert "PRIVATE KEY" not in text
        assert all("d" not in key for key in json.loads(text)["keys"])


def test_a_private_key_in_the_trust_directory_stops_the_service(
    trust: TestTrust, service_env: dict[str, str]
) -> None:
    from services.identity.main import build
    from services.platform import config as settings
    from services.platform.server import create_server

    key = Ed25519PrivateKey.generate()
    leaked = {"keys": [{**tokens.public_jwk(key), "d": "AAAA"}]}
    (trust.trust_dir / "leaked.jwks.json").write_text(json.dumps(leaked))
    config = settings.load("identity", service_env)
    with pytest.raises(settings.ConfigError, match="private"):
        create_server(config, build(config))


class TestEmployersReachOnlyTheirOwn:
    """A6.1: an employer files batches in its own name and sees its own employees' cards."""

    def _batch(self, suite: Suite, employer_id: str, metadata: Any) -> Any:
        return suite.card.ApplyBatch(
            slices(
                pb.ApplyBatchRequest(
                    request_id=suite.rid("batch"),
                    employer=pb.Employer(employer_id=employer_id, name="Beijing Example Co."),
                    bank_code=BANK,
                    pickup_branch_id="ICBC-0001",
                    applicants=[suite.applicant(suite.person())],
                )
            ),
            metadata=metadata,
        )

    def test_an_employer_cannot_file_read_or_look_into_anothers_batch(
        self, suite: Suite, victim: tuple[str, Any]
    ) -> None:
        owner = suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID)
        other = suite.token(
            channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller="91110000999999999X"
        )
        assert refusal(lambda: self._batch(suite, EMPLOYER_ID, other)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_THE_EMPLOYER",
        )
        filed = self._batch(suite, EMPLOYER_ID, owner)
        employee_card = filed.results[0].card_id
        assert suite.card.GetBatch(
            pb.GetBatchRequest(batch_id=filed.batch_id), metadata=owner
        ).batch_id == (filed.batch_id)
        assert refusal(
            lambda: suite.card.GetBatch(pb.GetBatchRequest(batch_id=filed.batch_id), metadata=other)
        ) == (grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND")
        stranger_card, _ = victim
        for card_id in (employee_card, stranger_card):
            assert refusal(
                lambda card_id=card_id: suite.card.GetCard(
                    pb.GetCardRequest(card_id=card_id), metadata=other
                )
            ) == (grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")
        assert suite.card.GetCard(
            pb.GetCardRequest(card_id=employee_card), metadata=owner
        ).card_id == (employee_card)


def test_services_with_only_public_keys_and_token_files_serve_every_call(
    start_service: Any, token: Any, trust: TestTrust, service_env: dict[str, str]
) -> None:
    """As in production: no service holds a key that can sign. Each reads the credential its
    deployment's issuer wrote to a file, and a whole application runs through them."""
    for name in ("identity", "card", "bank", "transit"):
        upper = name.upper()
        del service_env[f"SSCARD_{upper}_SIGNING_KEY_FILE"]
        signer = tokens.Signer(f"sscard-{name}", trust.key_file(f"sscard-{name}"))
        # bound to the service's certificate, as the deployment's issuer mints it
        own = trust.certificate(f"{name}-service").cert_file if trust.client_tls else None
        credential = signer.mint(
            f"{name}-service",
            Channel.INTERNAL,
            roles={Role.SERVICE},
            ttl=dt.timedelta(hours=1),
            certificate=own.read_bytes() if own else None,
        )
        path = trust.keys.parent / f"{name}.token"
        path.write_text(credential)
        service_env[f"SSCARD_{upper}_TOKEN_FILE"] = str(path)
    suite = Suite(start_service, token)
    person = suite.person()
    started = suite.apply(person)
    assert suite.settle(started.card_id).state == pb.SAGA_STATE_COMPLETED
    assert status_of(suite, started.card_id, suite.at(Channel.ONLINE, person)).status == (
        pb.CARD_STATUS_IN_PRODUCTION
    )
