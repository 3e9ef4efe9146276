"""A local DynamoDB for `make run` and `make test`: moto's server, one request at a time.

moto implements TransactWriteItems by snapshotting the tables and, when a transaction is
cancelled, restoring that snapshot. Under moto's threaded server a write that lands between the
snapshot and the restore is silently lost, which real DynamoDB never does. The functions rely on
cancelled transactions (duplicates, version conflicts), so requests are serialised here; the
server stays threaded so that idle keep-alive connections do not block others.
"""

import argparse
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def serialised(app):
    lock = threading.Lock()

    def call(environ, start_response):
        with lock:
            # The body is produced inside the lock: moto's state is read while building it.
            return list(app(environ, start_response))

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(app),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
