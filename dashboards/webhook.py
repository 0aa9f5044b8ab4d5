#!/usr/bin/env python3
"""A local Alertmanager webhook receiver for the demo and the tests: the stand-in for a pager
(POST /page) and a ticket queue (POST /ticket).

  webhook.py --listen 127.0.0.1:9095 --out alerts.jsonl

Prints `webhook listening on http://HOST:PORT` first (port 0 picks a free one), then one line
per notification; appends {"receiver": "page"|"ticket", "notification": <Alertmanager's JSON>}
to --out. Standard library only.
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:9095")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    host, _, port = a.listen.rpartition(":")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            receiver = self.path.strip("/")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            except ValueError:
                self.send_error(400, "not JSON")
                return
            alerts = body.get("alerts", [])
            names = sorted({x.get("labels", {}).get("alertname", "?") for x in alerts})
            with lock:
                with open(a.out, "a") as f:
                    # received_at (Unix seconds): when the page arrived, for drills' time to detect.
                    f.write(json.dumps({"receiver": receiver, "received_at": time.time(), "notification": body}) + "\n")
                status = body.get("status", "?")
                print(f"webhook: {receiver}: {status} {len(alerts)} alert(s): {', '.join(names)}", flush=True)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"webhook listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
