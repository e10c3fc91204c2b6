"""ApplyBatch is a client stream (A6.1): a batch larger than any one message travels in slices,
each within the request limit, and is applied whole; its request_id covers the whole stream,
however it is sliced; the header travels once and may not change on the way; and the stream is
read no further than one applicant past the 20,000 a batch may carry."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_status import rpc_status

from services.platform.auth import Channel, Role
from services.platform.grpc_errors import from_rpc_error
from services.platform.slices import slices
from sscard.card.v1 import card_pb2 as pb
from tests.cardsuite import BANK, EMPLOYER_ID, INSTANT, JPEG, Suite, rpc_error

# The largest photo an applicant may carry (512 KiB): two of them do not fit one message.
LARGE_PHOTO = JPEG + b"\x00" * (512 * 1024 - len(JPEG))


def employer(suite: Suite) -> Any:
    return suite.token(channel=Channel.ONLINE, roles=(Role.EMPLOYER,), caller=EMPLOYER_ID)


def batch(request_id: str, applicants: list[pb.Applicant]) -> pb.ApplyBatchRequest:
    return pb.ApplyBatchRequest(
        request_id=request_id,
        employer=pb.Employer(employer_id=EMPLOYER_ID, name="Beijing Example Co."),
        bank_code=BANK,
        pickup_branch_id=INSTANT,
        applicants=applicants,
    )


def one_per_message(request: pb.ApplyBatchRequest) -> list[pb.ApplyBatchRequest]:
    """Every applicant in its own message, each repeating the header."""
    header = pb.ApplyBatchRequest()
    header.CopyFrom(request)
    header.ClearField("applicants")
    messages = []
    for applicant in request.applicants:
        message = pb.ApplyBatchRequest()
        message.CopyFrom(header)
        message.applicants.append(applicant)
        messages.append(message)
    return messages


def test_A6_1_a_batch_larger_than_one_message_is_sent_in_slices_and_applied_whole(
    suite: Suite,
) -> None:
    people = [suite.person() for _ in range(3)]
    request = batch("big-batch", [suite.applicant(p, photo=LARGE_PHOTO) for p in people])
    assert request.ByteSize() > 1024 * 1024
    whole = rpc_error(lambda: suite.card.ApplyBatch(iter([request]), metadata=employer(suite)))
    assert whole.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_status.from_call(whole) is None  # refused by gRPC itself: no ErrorInfo
    messages = list(slices(request))
    assert len(messages) == 3
    answer = suite.card.ApplyBatch(iter(messages), metadata=employer(suite))
    assert (answer.accepted, answer.refused) == (3, 0)
    assert [r.index for r in answer.results] == [0, 1, 2]
    progress = suite.card.GetBatch(pb.GetBatchRequest(batch_id="big-batch"), metadata=suite.ops)
    assert progress.total == 3


def test_A6_1_the_request_id_covers_the_whole_stream_however_it_is_sliced(
    suite: Suite,
) -> None:
    request = batch("stream-1", [suite.applicant(suite.person()) for _ in range(3)])
    first = suite.card.ApplyBatch(slices(request), metadata=employer(suite))
    assert first.accepted == 3
    again = suite.card.ApplyBatch(iter(one_per_message(request)), metadata=employer(suite))
    assert again == first  # the stored answer: no second application
    other = batch("stream-1", [*request.applicants[:2], suite.applicant(suite.person())])
    reused = rpc_error(lambda: suite.card.ApplyBatch(slices(other), metadata=employer(suite)))
    assert reused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert from_rpc_error(reused).reason == "REQUEST_ID_REUSED"


def test_A6_1_a_later_message_may_not_change_the_batch_header(suite: Suite) -> None:
    request = batch("header-1", [suite.applicant(suite.person()) for _ in range(2)])
    for field, value in (
        ("bank_code", "BOC"),
        ("pickup_branch_id", "ICBC-0101"),
        ("request_id", "header-2"),
    ):
        messages = one_per_message(request)
        setattr(messages[1], field, value)
        error = rpc_error(
            lambda m=messages: suite.card.ApplyBatch(iter(m), metadata=employer(suite))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        refused = from_rpc_error(error)
        assert refused.reason == "BATCH_HEADER_CHANGED"
        assert [v.field for v in refused.violations] == [field]
    messages = one_per_message(request)
    messages[1].employer.name = "Another Co."
    error = rpc_error(lambda: suite.card.ApplyBatch(iter(messages), metadata=employer(suite)))
    assert [v.field for v in from_rpc_error(error).violations] == ["employer"]
    # nothing was applied: the same request_id still takes the batch
    answer = suite.card.ApplyBatch(iter(one_per_message(request)), metadata=employer(suite))
    assert answer.accepted == 2


def test_A6_1_an_endless_batch_is_refused_once_past_20000_applicants(suite: Suite) -> None:
    applicant = suite.applicant(suite.person())
    sent = itertools.count()

    def endless() -> Iterator[pb.ApplyBatchRequest]:
        yield batch("endless", [])
        while True:
            next(sent)
            yield pb.ApplyBatchRequest(applicants=[applicant] * 1000)

    error = rpc_error(
        lambda: suite.card.ApplyBatch(endless(), metadata=employer(suite), timeout=120)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = from_rpc_error(error)
    assert (refused.reason, refused.rule) == ("INVALID_BATCH", "A6.1")
    assert [(v.field, v.reason) for v in refused.violations] == [("applicants", "TOO_MANY")]
    assert next(sent) < 100  # the service stopped reading soon after the limit
