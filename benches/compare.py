#!/usr/bin/env python3
"""Switchyard vs nginx, side by side, on this machine.

    python3 benches/compare.py [--quick] [--rounds N] [--duration SECS] [--out FILE]
                               [--access-log-on] [--switchyard-arg=ARG ...] [--variant NAME=ARGS ...]

Starts one shared fast upstream (an nginx answering "hello from upstream"),
then nginx and Switchyard as the proxy under test with equivalent configs
(2 workers / threads each, access logs off unless --access-log-on, /app1 ->
upstream plus a few dead routes), and measures with wrk: throughput and
latency at 64 and 256 connections (rounds alternate nginx, Switchyard and
any --variant), memory (idle, under load, after 1000 ConfigMap swaps), CPU
per request, errors during 100 reloads under load, swap-to-serving latency
of a new route, and the cost of a 10 000-route table. Prints a markdown
table with the goals and writes it to --out (default
benches/results/latest.md).

Everything listens on 127.0.0.1 on ports the kernel picked; every process
the script starts lives in its own temp dir and is stopped on exit (normal
end, exception, Ctrl-C, SIGTERM, SIGHUP). A system nginx service is never
touched. Installs nginx and wrk with apt-get (as root) and builds the
release binary with cargo when they are missing.

Python 3 standard library only. The code is the sidebyside package next to
this file, one module per concern (sidebyside/__init__.py lists them).
"""

import sys

from sidebyside.cli import main

if __name__ == "__main__":
    sys.exit(main())
