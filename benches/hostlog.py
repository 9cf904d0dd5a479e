"""The test host's line per request on its stderr (tests/host/src/host.rs), as the
benches read it:

    remediator-host: POST /alertmanager -> 200 in 3 ms, kv_writes=1 store_us=8 instantiate_us=40 handle_us=290

kv_writes: the request's durable key-value write transactions (benches/writes.py);
store_us, instantiate_us, handle_us: where its time went (benches/coldstart.py).
"""
import re

LINE = re.compile(r"^remediator-host: ([A-Z]+) (\S+) -> (\d+) in \d+ ms, kv_writes=(\d+) "
                  r"store_us=(\d+) instantiate_us=(\d+) handle_us=(\d+)$")
NUMBERS = ("status", "kv_writes", "store_us", "instantiate_us", "handle_us")


def requests(err_path):
    """Every request line in the host's stderr file, in order: dicts with method, path
    and the NUMBERS as ints."""
    out = []
    with open(err_path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if m:
                method, path, *numbers = m.groups()
                out.append(dict(method=method, path=path, **dict(zip(NUMBERS, map(int, numbers)))))
    return out
