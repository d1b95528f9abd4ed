#!/usr/bin/env python3
"""Opens N TLS keep-alive connections to host:port, makes one request on each,
keeps them all open, prints the server's resident memory (VmRSS of PID), closes."""
import socket, ssl, sys, time

host, port, n, pid, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
before = rss_kb()
conns = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    s.recv(4096)
    conns.append(s)
time.sleep(1)
after = rss_kb()
print(f"rss_before_kb={before} rss_with_{n}_idle_kb={after} open={len(conns)}")
for s in conns:
    s.close()
