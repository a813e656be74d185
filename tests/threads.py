"""Work run on other threads with their own database connections, as workers would, and waiting for what they
do: the tests of locks and heartbeats."""

import threading
import time

from django.db import connection


def in_thread(work, *args, **kwargs) -> threading.Thread:
    """Run `work` as a worker would, on its own database connection; its error is kept on the thread."""

    def run():
        try:
            work(*args, **kwargs)
        except BaseException as exc:  # handed to the test by `finished`
            thread.error = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.error = None
    thread.start()
    return thread


def eventually(check, timeout: float = 30) -> None:
    """Wait until `check()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def finished(*threads: threading.Thread) -> None:
    """Wait for `in_thread` work to end, and raise the first error it kept."""
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
        if thread.error:
            raise thread.error
