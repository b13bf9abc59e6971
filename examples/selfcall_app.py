"""A small web app that calls itself over loopback, to see what loopscope shows.

``GET /checkout`` makes ``--fanout`` HTTP calls to its own ``/price`` endpoint through a keep-alive
connection pool on 127.0.0.1 (the "own public URL" pattern), and keeps a connection to Redis if
``--redis PORT`` is given. Run it, then ``loopscope map``.

    python examples/selfcall_app.py --port 8000 --fanout 3
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import queue
import socket
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--fanout", type=int, default=3)
    parser.add_argument("--redis", type=int, default=None)
    args = parser.parse_args()
    pool: queue.Queue[http.client.HTTPConnection] = queue.Queue()
    for _ in range(args.fanout):
        pool.put(http.client.HTTPConnection("127.0.0.1", args.port, timeout=5))
    redis = socket.create_connection(("127.0.0.1", args.redis)) if args.redis else None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/checkout":
                total = 0
                for _ in range(args.fanout):
                    conn = pool.get()
                    try:
                        conn.request("GET", "/price")
                        total += int(conn.getresponse().read())
                    finally:
                        pool.put(conn)
                body = f"{total}\n".encode()
            else:
                body = b"7"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on {args.bind}:{args.port}; redis={'yes' if redis else 'no'}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
