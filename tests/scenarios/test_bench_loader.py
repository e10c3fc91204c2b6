"""The benchmarks' bulk loader (tests/bench/loader.py) leaves cards that the read paths cannot
tell from cards that went through the whole suite: same status, same kind of history, usable at
a transit kiosk."""

from __future__ import annotations

import datetime as dt

from services.platform import config as settings
from services.platform.auth import Channel, Role
from services.platform.pii import PiiCipher
from sscard.card.v1 import card_pb2 as pb
from sscard.transit.v1 import transit_pb2
from tests.bench import loader
from tests.cardsuite import Suite, active_card


def test_a8_1_loaded_card_reads_like_an_activated_one(suite: Suite) -> None:
    real_id, _ = active_card(suite)
    deps = suite.card_server.deps
    config = suite.card_server.server.config
    cipher = PiiCipher(config.secret("CARD_PII_KEY", settings.VAR_DIR / "card-pii.key"))
    now = dt.datetime.now(dt.UTC)
    (loaded_id,) = loader.load_cards(deps.db, cipher, 1, now, first=777)

    real = suite.get(real_id, history=True)
    loaded = suite.get(loaded_id, history=True)
    assert loaded.status == real.status == pb.CARD_STATUS_ACTIVE
    for name in ("card_number_masked", "person_id", "bank_code", "holder_name", "mobile_masked"):
        assert getattr(loaded, name), name
    assert loaded.document.type == real.document.type
    assert loaded.notices, "the holder was told the card is made (A7.1)"
    statuses = [t.to_status for t in loaded.transitions]
    assert statuses[0] == pb.CARD_STATUS_APPLIED and statuses[-1] == pb.CARD_STATUS_ACTIVE
    assert [t.to_status for t in real.transitions][-1] == pb.CARD_STATUS_ACTIVE

    kiosk = suite.token(Channel.TRANSIT_OUTLET, (Role.COUNTER,), "kiosk-1", outlet_id="K-1")
    entry = suite.transit.TopUp(
        transit_pb2.TopUpRequest(request_id="loaded-1", card_id=loaded_id, amount_fen=500),
        metadata=kiosk,
    )
    assert entry.balance_after_fen == 500
