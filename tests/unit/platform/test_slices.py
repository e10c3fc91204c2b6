"""One bulk request cut into the messages of its client stream: each within the limit, the
header in the first, and merged back together they are the request again."""

from __future__ import annotations

from services.platform.slices import slices
from sscard.card.v1 import card_pb2 as pb

KIB = 1024


def batch(*photos: int) -> pb.ApplyBatchRequest:
    return pb.ApplyBatchRequest(
        request_id="b-1",
        bank_code="ICBC",
        pickup_branch_id="ICBC-0001",
        applicants=[pb.Applicant(name=f"p{i}", photo=b"x" * n) for i, n in enumerate(photos)],
    )


def merged(messages: list[pb.ApplyBatchRequest]) -> pb.ApplyBatchRequest:
    whole = pb.ApplyBatchRequest()
    for message in messages:
        whole.MergeFrom(message)
    return whole


def test_each_message_fits_and_the_stream_carries_the_request_whole() -> None:
    request = batch(*([512 * KIB] * 3), *([100] * 5000))
    messages = list(slices(request))
    assert all(m.ByteSize() <= 1024 * KIB for m in messages)
    assert [len(m.applicants) for m in messages][:2] == [1, 1]  # two photos never share one
    assert merged(messages) == request
    assert [m.request_id for m in messages] == ["b-1"] + [""] * (len(messages) - 1)


def test_at_most_a_given_count_per_message_and_a_header_alone_without_items() -> None:
    assert [len(m.applicants) for m in slices(batch(*([10] * 7)), most=3)] == [3, 3, 1]
    [only] = slices(batch())
    assert only == batch()


def test_an_item_over_the_limit_travels_alone_for_the_service_to_refuse() -> None:
    request = batch(10, 2048 * KIB, 10)
    assert [len(m.applicants) for m in slices(request)] == [1, 1, 1]
