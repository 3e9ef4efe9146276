"""A local DynamoDB for `make run` and `make test`: moto's server, one request at a time.

moto implements TransactWriteItems by snapshotting the tables and, when a transaction is
cancelled, restoring that snapshot. Two consequences, both fixed here:

- Under moto's threaded server a write that lands between the snapshot and the restore is
  silently lost, which real DynamoDB never does. The functions rely on cancelled transactions
  (duplicates, version conflicts), so requests are serialised; the server stays threaded so
  that idle keep-alive connections do not block others.
- moto ignores TransactWriteItems' ClientRequestToken. The SDK sends one token per call and
  keeps it across its retries, so when an attempt commits but its answer is late (a busy local
  server, a timeout), DynamoDB answers the retry with success and changes nothing, while moto
  runs the transaction again and cancels it: the functions would then call a first delivery a
  duplicate. Tokens of successful transactions are remembered for ten minutes, as DynamoDB does.
- The snapshot is a deep copy of every table the transaction names, so each transaction costs
  time in proportion to the table size (80 ms at 3,000 items): a soak run of 10,000 deliveries
  would crawl. Since requests are serialised, saving and restoring just the items the
  transaction names is an exact rollback; moto's own table snapshot is turned into a no-op.
"""

import argparse
import copy
import io
import json
import signal
import sys
import threading
import time

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def named_items(backend, transact_items):
    """(table name, key) of every item a TransactWriteItems request names."""
    for entry in transact_items:
        for op in entry.values():
            table = backend.get_table(op["TableName"])
            if "Key" in op:
                yield op["TableName"], op["Key"]
            else:
                names = [n for n in (table.hash_key_attr, table.range_key_attr) if n]
                yield op["TableName"], {name: op["Item"][name] for name in names}


def restore(backend, table_name, key, item):
    """Puts back `item` (an Item, or None for "did not exist") at `key`."""
    table = backend.get_table(table_name)
    if item is None:
        table.delete_item(*backend.get_keys_value(table, key))
    else:
        table.put_item(item.to_json()["Attributes"])


def with_item_level_rollback(transact_write_items):
    """Wraps moto's TransactWriteItems: saves the named items, lets moto run the transaction
    with its whole-table snapshot disabled, and restores the saved items if it fails. Exact
    only because requests are serialised (see `serialised`)."""

    def run(backend, transact_items):
        try:
            saved = [
                (name, key, copy.deepcopy(backend.get_item(name, key)))
                for name, key in named_items(backend, transact_items)
            ]
        except Exception:
            # A malformed request: moto reports it, and nothing has been written yet.
            saved = []
        Table.__deepcopy__ = lambda table, memo: table
        try:
            return transact_write_items(backend, transact_items)
        except Exception:
            for name, key, item in saved:
                restore(backend, name, key, item)
            raise
        finally:
            del Table.__deepcopy__

    return run


def serialised(app):
    lock = threading.Lock()

    def call(environ, start_response):
        with lock:
            # The body is produced inside the lock: moto's state is read while building it.
            return list(app(environ, start_response))

    return call


IDEMPOTENCY_WINDOW_SECONDS = 600


def idempotent_transactions(app):
    """Answers a TransactWriteItems whose ClientRequestToken already succeeded (within the
    window) with the first answer, without running it again; the same token with other
    parameters is refused, as DynamoDB does. Must wrap a serialised app."""
    succeeded = {}  # token -> (time, request body, status, headers, response body)

    def call(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".TransactWriteItems"):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(request)
        try:
            token = json.loads(request).get("ClientRequestToken")
        except ValueError:
            token = None
        now = time.monotonic()
        for old in [t for t, seen in succeeded.items() if now - seen[0] > IDEMPOTENCY_WINDOW_SECONDS]:
            del succeeded[old]
        if token in succeeded:
            _, first_request, status, headers, body = succeeded[token]
            if first_request == request:
                start_response(status, headers)
                return body
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
            error = {
                "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                "message": "The request uses the same client token as a previous, but non-identical request.",
            }
            return [json.dumps(error).encode()]
        answer = {}

        def remember(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info)

        body = list(app(environ, remember))
        if token and answer.get("status", "").startswith("200"):
            succeeded[token] = (now, request, answer["status"], answer["headers"], body)
        return body

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    DynamoDBBackend.transact_write_items = with_item_level_rollback(DynamoDBBackend.transact_write_items)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(idempotent_transactions(app)),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
