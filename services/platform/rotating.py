"""A channel that moves to a renewed client certificate without failing a call.

grpcio builds a channel's credentials once, so a client that follows its certificate files
(``tls.ClientTls``) needs a new channel when they change. ``RotatingChannel`` is what stubs
hold: each call asks for the client's certificate of the moment and goes over the channel built
with it, a new one once the files were renewed; the channel before is closed when its last call
ends, so a call under way at the swap finishes where it started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from services.platform.tls import ClientSide, ClientTls

log = logging.getLogger("sscard.clients")


class _Generation:
    """One underlying channel and the calls it still carries."""

    def __init__(self, side: ClientSide, channel: grpc.Channel) -> None:
        self.side = side
        self.channel = channel
        self.calls = 0


class RotatingChannel(grpc.Channel):
    """A channel to ``target`` presenting ``own``'s current certificate; ``build`` makes the
    underlying channel from a certificate's channel credentials."""

    def __init__(
        self, target: str, own: ClientTls, build: Callable[[grpc.ChannelCredentials], grpc.Channel]
    ) -> None:
        self._target = target
        self._own = own
        self._build = build
        self._lock = threading.Lock()
        self._closed = False
        self._draining: set[_Generation] = set()
        side = own.current()
        self._live = _Generation(side, build(side.credentials))

    def _acquire(self) -> _Generation:
        """The generation a new call goes over, counted until ``_release``."""
        side = self._own.current()
        retired: grpc.Channel | None = None
        with self._lock:
            if side is not self._live.side and not self._closed:
                old, self._live = self._live, _Generation(side, self._build(side.credentials))
                if old.calls == 0:
                    retired = old.channel
                else:
                    self._draining.add(old)
                log.info("calls to %s now present the renewed certificate", self._target)
            self._live.calls += 1
            live = self._live
        if retired is not None:
            retired.close()
        return live

    def _release(self, generation: _Generation) -> None:
        with self._lock:
            generation.calls -= 1
            done = generation in self._draining and generation.calls == 0
            if done:
                self._draining.discard(generation)
        if done:
            generation.channel.close()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Answered(self, "unary_unary", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Answered(self, "stream_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Streamed(self, "unary_stream", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Streamed(self, "stream_stream", method, args, kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._live.channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._live.channel.unsubscribe(callback)

    def close(self) -> None:
        """Closes every underlying channel, cancelling calls under way, as grpcio's ``close``."""
        with self._lock:
            self._closed = True
            channels = [self._live.channel, *(g.channel for g in self._draining)]
            self._draining.clear()
        for channel in channels:
            channel.close()

    def __enter__(self) -> RotatingChannel:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Calls:
    """A method of a ``RotatingChannel``: each call picks the generation it goes over."""

    def __init__(
        self, rotating: RotatingChannel, kind: str, method: str, args: Any, kwargs: Any
    ) -> None:
        self._rotating = rotating
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs

    def _on(self, generation: _Generation) -> Any:
        make = getattr(generation.channel, self._kind)
        return make(self._method, *self._args, **self._kwargs)

    def _whole(self, invoke: Callable[[Any], Any]) -> Any:
        """A blocking call: counted while it runs."""
        generation = self._rotating._acquire()
        try:
            return invoke(self._on(generation))
        finally:
            self._rotating._release(generation)

    def _until_done(self, invoke: Callable[[Any], Any]) -> Any:
        """A future or a stream: counted until it ends, however it ends."""
        generation = self._rotating._acquire()
        try:
            started = invoke(self._on(generation))
        except BaseException:
            self._rotating._release(generation)
            raise
        started.add_done_callback(lambda _: self._rotating._release(generation))
        return started


class _Answered(_Calls):
    """Unary and client-streaming methods: one answer."""

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._whole(lambda call: call(request, *args, **kwargs))

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._whole(lambda call: call.with_call(request, *args, **kwargs))

    def future(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._until_done(lambda call: call.future(request, *args, **kwargs))


class _Streamed(_Calls):
    """Server- and bidirectional-streaming methods: the call is the stream of answers."""

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self._until_done(lambda call: call(request, *args, **kwargs))
