"""N keep-alive GETs of one path on one connection (tests/bench/status_instructions.sh).

usage: keepalive_get.py PORT PATH N
"""
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", path, headers={"Accept-Encoding": "gzip, deflate, br"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
