"""The producer calls of KafkaStreamWriter: producing into the open transaction, waiting for room in
librdkafka's bounded queue (the backpressure on the source), and turning librdkafka's errors into
Headwater's (fenced, fatal, failed delivery), aborting the open transaction where that still helps.

Split from kafka_writer.py (which keeps the transaction and record logic) when that passed 500 lines.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from cdc.core.errors import HeadwaterError, ProducerFenced
from cdc.stream.kafka_batches import Messages, produce_in_order
from cdc.stream.kafka_clients import stream_error
from cdc.stream.raw_produce import PackedMessages, RawProducer

__all__ = ["ProducerCalls"]

log = logging.getLogger(__name__)

_POLL_EVERY = 1_000  # serve delivery reports every this many produced messages


class ProducerCalls:
    """The writer's producer and its error state; KafkaStreamWriter sets these up."""

    pipeline: str
    _producer: Producer | None
    _raw: RawProducer | None  # the producer's librdkafka, for PackedMessages (None: produce_batch)
    _since_poll: int
    _fenced: ProducerFenced | None
    _delivery_error: KafkaError | None
    _fatal_error: KafkaError | None
    _in_transaction: bool
    _pending: set[str]
    _snapshot_pending: str | None
    _timeout: float

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        producer = self._producer
        assert producer is not None
        try:
            producer.produce(topic, value, key, partition)
        except BufferError:
            self._produce_when_room(producer, topic, key, value, partition)
        except KafkaException as exc:
            raise self._fail(exc.args[0], f"producing to {topic}") from exc
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            self._poll(0)
            self._check_deliveries()

    def _produce_batch(self, topic: str, messages: Messages) -> None:
        producer = self._producer
        assert producer is not None
        error = produce_in_order(producer, topic, messages, self._wait_for_room)
        if error is not None:
            raise self._fail(error, f"producing to {topic}")
        self._since_poll += len(messages)
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            self._poll(0)
            self._check_deliveries()

    def _produce_packed(self, topic: str, messages: PackedMessages) -> None:
        """``messages`` enqueued in order straight into librdkafka (raw_produce), or through
        ``produce_batch`` when this producer has no direct path."""
        raw = self._raw
        if raw is None:
            self._produce_batch(topic, messages.dicts())
            return
        done, total = 0, len(messages)
        while True:
            taken, code = messages.produce(raw, topic, done)
            done += taken
            if code == 0:
                break
            if code != KafkaError._QUEUE_FULL:
                raise self._fail(KafkaError(code), f"producing to {topic}")
            self._wait_for_room()
        self._since_poll += total
        if self._since_poll >= _POLL_EVERY:
            self._since_poll = 0
            self._poll(0)
            self._check_deliveries()

    def _wait_for_room(self) -> None:
        """The bounded local queue is full: wait for the broker to take some (backpressure)."""
        self._poll(0.05)
        self._check_deliveries()

    def _produce_when_room(
        self, producer: Producer, topic: str, key: bytes | None, value: bytes | None, partition: int
    ) -> None:
        """The bounded local queue is full: wait for the broker to take some (backpressure)."""
        while True:
            self._poll(0.05)
            self._check_deliveries()
            try:
                producer.produce(topic, value, key, partition)
                return
            except BufferError:
                continue
            except KafkaException as exc:
                raise self._fail(exc.args[0], f"producing to {topic}") from exc

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None and self._delivery_error is None:
            self._delivery_error = error

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal_error = error
        log.warning("kafka: %s", error.str())

    def _check_deliveries(self) -> None:
        error = self._fatal_error or self._delivery_error
        if error is not None:
            raise self._fail(error, "delivering messages")

    def _fail(self, error: KafkaError, doing: str) -> HeadwaterError:
        """Abort the open transaction where that is still possible; return the error to raise."""
        failure = stream_error(self._cause(error), self.pipeline, doing)
        if isinstance(failure, ProducerFenced):
            self._fenced = failure
            self._in_transaction = False
            return failure
        self._abort_quietly()
        return failure

    def _abort_quietly(self) -> None:
        producer = self._producer
        self._in_transaction = False
        self._pending.clear()
        self._snapshot_pending = None
        self._delivery_error = None
        if producer is None or (self._fatal_error is not None):
            return
        try:
            self._abort_transaction(producer)
        except KafkaException as exc:
            log.warning("abort after a failure failed too (the broker aborts it on timeout): %s", exc)

    def _abort_transaction(self, producer: Producer) -> None:
        # Let in-flight messages settle before EndTxn: aborting while the broker is still adding the
        # transaction's partitions fails now and then with a fatal INVALID_TXN_STATE
        # (confluentinc/librdkafka#4849); flushing first avoids that race.
        producer.flush(self._timeout)
        producer.abort_transaction(self._timeout)

    def _cause(self, error: KafkaError) -> KafkaError:
        """For a generic "Local: Fatal error", the underlying fatal error (e.g. fenced) if known."""
        if not (error.fatal() or error.code() == KafkaError._FATAL):
            return error
        if self._fatal_error is None:
            self._poll(0)  # error_cb (or poll itself) reports the fatal error's cause
        return self._fatal_error or error

    def _poll(self, timeout: float) -> None:
        """Serve delivery reports and error callbacks; a fatal error raised by poll is recorded."""
        if self._producer is None:
            return
        try:
            self._producer.poll(timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None:
                error = KafkaError(KafkaError._FAIL, str(exc))
            if error.fatal():
                self._fatal_error = self._fatal_error or error
            else:
                self._delivery_error = self._delivery_error or error

    def _error(self, exc: KafkaException, doing: str) -> HeadwaterError:
        error = (
            exc.args[0]
            if exc.args and isinstance(exc.args[0], KafkaError)
            else KafkaError(KafkaError._FAIL, str(exc))
        )
        failure = stream_error(self._cause(error), self.pipeline, doing)
        if isinstance(failure, ProducerFenced):
            self._fenced = failure
            self._in_transaction = False
        return failure

    def _live_producer(self) -> Producer:
        if self._fenced is not None:
            raise self._fenced
        if self._fatal_error is not None:
            failure = stream_error(self._fatal_error, self.pipeline, "producer")
            if isinstance(failure, ProducerFenced):
                self._fenced = failure
            raise failure
        if self._producer is None:
            raise RuntimeError("writer not started: call start() first")
        return self._producer
