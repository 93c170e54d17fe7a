"""A fixed, repeatable load for benches/instructions.sh.

    python3 benches/instructions_load.py PORT REQUESTS CONNECTIONS

Sends REQUESTS keep-alive GETs for /app1/x to 127.0.0.1:PORT over
CONNECTIONS connections: in each round one request on every connection,
then every answer is read in full (Content-Length bodies), so the proxy
sees bursts of requests in flight at once, as under wrk. Exits non-zero if
a connection closes or an answer is not 200.
"""

import socket
import sys


def read_answer(sock):
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("a connection closed")
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            continue
        head = buf[:end].lower()
        if not head.startswith(b"http/1.1 200"):
            raise SystemExit(f"answer {head[:40]!r}")
        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
        if len(buf) >= end + 4 + length:
            return


def main():
    port, requests, conns = (int(a) for a in sys.argv[1:4])
    request = (
        b"GET /app1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: load\r\nAccept: */*\r\n\r\n"
        % port
    )
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    done = 0
    while done < requests:
        for s in socks:
            s.sendall(request)
        for s in socks:
            read_answer(s)
        done += conns
    print("done", done)


if __name__ == "__main__":
    main()
