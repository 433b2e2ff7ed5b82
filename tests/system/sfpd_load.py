#!/usr/bin/env python3
# sfpd_load.py PORT -- run by sfpd.sh against a real sfpd on 127.0.0.1:
# 70 connections (the 6 beyond the limit of 64 must get 503, the first must
# still answer), then 2000 pipelined requests for ~20 kB answers left unread
# for a second (sfpd must pause reading at its output limit, not buffer
# without bound), then every answer must arrive whole and in order.
# Prints "BUSY FIRST_OK COUNT"; bounded in count and time, loopback only.
import socket
import sys
import time

port = int(sys.argv[1])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(70)]
time.sleep(0.5)
busy = 0
for s in socks[64:]:
    s.settimeout(5)
    busy += s.recv(100).startswith(b"HTTP/1.1 503 ")
s = socks[0]
s.settimeout(5)
s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
first_ok = s.recv(100).startswith(b"HTTP/1.1 200 ")
for s in socks:
    s.close()
time.sleep(0.3)

s = socket.create_connection(("127.0.0.1", port))
n = 2000
s.sendall(b"GET /api/v1/bitlengths HTTP/1.1\r\n\r\n" * n)
time.sleep(1)
s.settimeout(10)
buf, count, t0 = b"", 0, time.time()
while count < n and time.time() - t0 < 40:
    d = s.recv(1 << 20)
    if not d:
        break
    buf += d
    while True:
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            break
        head = buf[:i].split(b"\r\n")
        cl = int([h for h in head if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        if len(buf) < i + 4 + cl:
            break
        if not head[0].startswith(b"HTTP/1.1 200 ") or buf[i + 4:i + 5] != b"{":
            print("bad response", head[0])
            sys.exit(1)
        buf, count = buf[i + 4 + cl:], count + 1
print(busy, first_ok, count)
