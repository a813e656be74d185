"""The configured broker (Redis in CI, a folder by default) carries a message over a real connection."""

import uuid

from kombu import Queue

from webapp.celery import app


def test_a_message_goes_through_the_broker():
    queue = Queue(f"test-{uuid.uuid4().hex}")
    body = {"hello": uuid.uuid4().hex}
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        bound = queue(connection.default_channel)
        bound.declare()
        try:
            with connection.Producer() as producer:
                producer.publish(body, routing_key=queue.name, declare=[queue], serializer="json")
            message = None
            for _ in range(50):
                message = bound.get(no_ack=False)
                if message:
                    break
            assert message is not None
            assert message.decode() == body
            message.ack()
        finally:
            bound.delete()
