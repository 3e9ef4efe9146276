#!/usr/bin/env python3
"""The tables of scripts/create_tables.py, without DynamoDB Streams, for `make bench`.

moto keeps every stream record for good and copies the whole table, records included, on each
TransactWriteItems; with streams on, its latency and memory grow with every write (a few
hundred transactions in, a call can stall for seconds). The functions only write, so the
stream changes nothing about what they do; without it moto's cost stays flat and the harness
measures the functions. Same arguments as create_tables.py.
"""

import create_tables

if __name__ == "__main__":
    for spec in create_tables.TABLES:
        spec["stream"] = None
    create_tables.main()
