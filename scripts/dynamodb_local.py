"""A local DynamoDB for `make run` and `make test`: moto's server, one request at a time.

What it changes in moto, and why:

- moto implements TransactWriteItems by snapshotting the tables and, when a transaction is
  cancelled, restoring that snapshot. Under moto's threaded server a write that lands between
  the snapshot and the restore is silently lost, which real DynamoDB never does. The functions
  rely on cancelled transactions (duplicates, version conflicts), so requests are serialised,
  first come first served (FifoLock); the server stays threaded so that idle keep-alive
  connections do not block others.
- The snapshot is a deep copy of every table the transaction names, so each transaction costs
  time in proportion to the table size (80 ms at 3,000 items): a soak run of 10,000 deliveries
  would crawl. Since requests are serialised, saving and restoring just the items the
  transaction names is an exact rollback; moto's own table snapshot is turned into a no-op.
- moto ignores TransactWriteItems' ClientRequestToken. The SDK sends one token per call and
  keeps it across its retries, so when an attempt commits but its answer is late (a busy local
  server, a timeout), DynamoDB answers the retry with success and changes nothing, while moto
  runs the transaction again and cancels it: the functions would then call a first delivery a
  duplicate. Tokens of successful transactions are remembered for ten minutes, as DynamoDB does.
- Full garbage collections of the server's heap (every stored item and stream record) paused
  it for a second at a time under the soak; the long-lived objects are frozen out of the
  collector's reach (FREEZE_EVERY), and a collection that still pauses over 0.1 s is reported
  on stderr (moto.log).
- An item's size is summed once per put, and moto's list of its own modules is read once
  (with_item_size_checked_once, with_module_list_read_once): a put of a 4 KB item takes about a
  third less time.
- For `make bench` (`--accounting`), every call is counted here, with the capacity units
  DynamoDB would charge (see "accounting" below): moto's own ConsumedCapacity is a constant.
"""

import argparse
import base64
import collections
import copy
import gc
import io
import json
import signal
import sys
import threading
import time

from moto import backends as moto_backends
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize
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


class FifoLock:
    """A lock handed to its waiters in the order they asked for it.

    `threading.Lock` promises no order: under a steady stream of requests, one request can wait
    behind hundreds of later ones, for seconds, which a real DynamoDB never does to one call.
    Here a request waits at most for those that arrived before it.
    """

    def __init__(self):
        self._guard = threading.Lock()
        self._held = False
        self._waiting = collections.deque()

    def __enter__(self):
        with self._guard:
            if not self._held:
                self._held = True
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        # The releaser hands the lock over by setting the event: it stays held in between.
        turn.wait()
        return self

    def __exit__(self, *_):
        with self._guard:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._held = False


# Python's full garbage collection walks every object the server holds. moto keeps every item,
# and every stream record with both images, as Python objects: after 20,000 writes that is
# 1.3 million objects and a 0.6 s pause on an idle machine (over a second on a loaded one), during
# which no request is answered. Real DynamoDB has no such pauses, and they turn the functions'
# deadlines into 503s. So every FREEZE_EVERY requests, the objects alive so far are moved out of
# the collector's reach (gc.freeze): the stored data is long-lived by nature, and the short-lived
# garbage of a request is collected long before the next freeze.
FREEZE_EVERY = 1_000
# moto's own item size limit (LimitedSizeDict): DynamoDB's 400 KB, with the margin moto measured.
ITEM_SIZE_LIMIT = 405_000
SLOW_COLLECTION = 0.1


def log_slow_collections():
    """Reports every garbage collection that stops the server for over SLOW_COLLECTION s."""
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took = time.perf_counter() - started[0]
        if took > SLOW_COLLECTION:
            print(
                f"dynamodb_local: garbage collection of generation {info['generation']} paused the server for {took * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    gc.callbacks.append(callback)


def with_item_size_checked_once():
    """moto checks DynamoDB's item size limit each time an attribute is set on an item, by
    summing the sizes of every attribute already set: a put of an item with n attributes sizes
    them n times over, a quarter of each call's time for the functions' 4 KB items. Here an item
    built from a request sums each attribute's size once, and raises moto's own error at the
    same attribute as moto would. Attributes set later (update expressions) keep moto's check."""

    def build(self, hash_key, range_key, attrs):
        self.hash_key = hash_key
        self.range_key = range_key
        self.attrs = LimitedSizeDict()
        total = 0
        for key, value in attrs.items():
            typed = DynamoType(value)
            total += bytesize(key) + typed.size()
            if total > ITEM_SIZE_LIMIT:
                raise ItemSizeTooLarge
            dict.__setitem__(self.attrs, key, typed)

    Item.__init__ = build


def with_module_list_read_once():
    """moto's server lists its own package directory on every request to tell a service name
    from a host name; the list cannot change while it runs."""
    modules = tuple(moto_backends.list_of_moto_modules())
    moto_backends.list_of_moto_modules = lambda: modules


def serialised(app):
    lock = FifoLock()
    served = [0]

    def call(environ, start_response):
        with lock:
            # The body is produced inside the lock: moto's state is read while building it.
            body = list(app(environ, start_response))
            served[0] += 1
            if served[0] % FREEZE_EVERY == 0:
                gc.freeze()
            return body

    return call


# ------------------------------------------------------------------ accounting for `make bench`
#
# moto reports ConsumedCapacity as a constant, so the capacity units are computed here from
# DynamoDB's documented rules ("Item sizes and formats", "Read/write capacity units"):
# - item size: each attribute's name plus its value; strings and binaries by length, a number
#   one byte per two significant digits plus one, booleans and nulls one byte, lists and maps
#   three bytes plus one per element (and the keys of a map), sets the sum of their elements;
# - a write consumes ceil(size / 1 KB) units of the larger of the item before and after it,
#   at least one, also when its condition fails; a transaction doubles each of its writes;
# - a strongly consistent read consumes ceil(size / 4 KB) units, at least one (half for an
#   eventually consistent one).
# GET /_bench/calls answers the totals of DynamoDB's calls since the last POST /_bench/reset.

WRITES = ("PutItem", "UpdateItem", "DeleteItem")


def number_size(text):
    digits = text.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def binary_size(inner):
    """Bytes of a binary value: base64 text on the wire, raw or base64 in moto's item JSON."""
    if isinstance(inner, bytes):
        return len(inner)
    try:
        return len(base64.b64decode(inner, validate=True))
    except ValueError:
        return len(inner.encode())


def value_size(value):
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return binary_size(inner)
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(number_size(v) for v in inner)
    if kind == "BS":
        return sum(binary_size(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    return 1


def item_size(item):
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def units(size, unit):
    return max(1, -(-size // unit))


class Accounting:
    def __init__(self):
        self.reset()

    def reset(self):
        self.calls = {}
        self.condition_failures = 0
        self.write_units = {}
        self.read_units = {}
        self.last_put_bytes = {}

    def add(self, table, operation, units, kind):
        per = getattr(self, kind)
        per[operation] = per.get(operation, 0) + units

    def report(self):
        return {
            "calls": self.calls,
            "condition_failures": self.condition_failures,
            "write_units": self.write_units,
            "read_units": self.read_units,
            "last_put_bytes": self.last_put_bytes,
        }


_BACKENDS = {}  # table name -> the moto backend holding it


def backend_of(table_name):
    """The backend that holds `table_name`: looked up once, in the account and regions that
    already exist (iterating moto's backend dictionaries would create every region)."""
    if table_name not in _BACKENDS:
        from moto.dynamodb.models import dynamodb_backends

        for account_id in list(dynamodb_backends.keys()):
            account = dynamodb_backends[account_id]
            for region in list(account.keys()):
                backend = account[region]
                if table_name in backend.tables:
                    _BACKENDS[table_name] = backend
    return _BACKENDS.get(table_name)


def stored_item(table_name, key):
    backend = backend_of(table_name)
    if backend is None:
        return None
    item = backend.get_item(table_name, key)
    return item.to_json()["Attributes"] if item else None


def write_key(op, table_name):
    if "Key" in op:
        return op["Key"]
    table = backend_of(table_name).get_table(table_name)
    names = [n for n in (table.hash_key_attr, table.range_key_attr) if n]
    return {name: op["Item"][name] for name in names}


def write_units(op):
    """Units of one write (PutItem/UpdateItem/DeleteItem shape), before it runs."""
    table_name = op["TableName"]
    key = write_key(op, table_name)
    before = item_size(stored_item(table_name, key)) if key else 0
    after = item_size(op.get("Item"))
    return units(max(before, after), 1024)


def accounted(app, accounting):
    def call(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ("/_bench/calls", "/_bench/reset"):
            if path == "/_bench/reset":
                accounting.reset()
            body = json.dumps(accounting.report()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        # DynamoDB's own calls only: the same server answers Secrets Manager.
        service, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")
        if not service.startswith("DynamoDB_"):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(request)
        try:
            body = json.loads(request)
        except ValueError:
            body = {}
        accounting.calls[operation] = accounting.calls.get(operation, 0) + 1
        try:
            if operation in WRITES:
                accounting.add(body["TableName"], operation, write_units(body), "write_units")
                if operation == "PutItem":
                    accounting.last_put_bytes[body["TableName"]] = item_size(body["Item"])
            elif operation == "TransactWriteItems":
                for entry in body.get("TransactItems", []):
                    for op in entry.values():
                        accounting.add(op["TableName"], operation, 2 * write_units(op), "write_units")
                        if "Item" in op:
                            accounting.last_put_bytes[op["TableName"]] = item_size(op["Item"])
            elif operation == "GetItem":
                size = item_size(stored_item(body["TableName"], body["Key"]))
                read = units(size, 4096) / (1 if body.get("ConsistentRead") else 2)
                accounting.add(body["TableName"], operation, read, "read_units")
            elif operation == "BatchGetItem":
                # Each item read is charged as its own GetItem.
                for table_name, request in body.get("RequestItems", {}).items():
                    for key in request.get("Keys", []):
                        size = item_size(stored_item(table_name, key))
                        read = units(size, 4096) / (1 if request.get("ConsistentRead") else 2)
                        accounting.add(table_name, operation, read, "read_units")
        except Exception as error:  # accounting must never change an answer
            print(f"bench accounting: {operation}: {error!r}", file=sys.stderr)
        answer = {}

        def remember(status, headers, exc_info=None):
            answer["status"] = status
            return start_response(status, headers, exc_info)

        out = list(app(environ, remember))
        if answer.get("status", "").startswith("400") and b"ConditionalCheckFailed" in b"".join(out):
            accounting.condition_failures += 1
        return out

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
    parser.add_argument(
        "--accounting",
        action="store_true",
        help="count calls and capacity units (make bench); off by default, it costs every call time",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log_slow_collections()
    DynamoDBBackend.transact_write_items = with_item_level_rollback(DynamoDBBackend.transact_write_items)
    with_item_size_checked_once()
    with_module_list_read_once()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(accounted(idempotent_transactions(app), Accounting()) if args.accounting else idempotent_transactions(app)),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
