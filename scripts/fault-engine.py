#!/usr/bin/env python3
"""An engine stand-in for scripts/faults.sh: answers the three endpoints from fixtures/engine/,
except that, AFTER seconds after it starts, the state endpoint misbehaves as FAULT says (hang,
slow, down, malformed, huge, or none). Usage: fault-engine.py PORT FAULT [AFTER]"""
import http.server
import os
import socketserver
import sys
import time

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "engine")
ANSWERS = {
    "/state": "state-current.json",
    "/agents": "agents-raw-records.json",
    "/models": "models-raw-records.json",
}


class Engine(http.server.BaseHTTPRequestHandler):
    fault = "none"
    fault_from = 0.0

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = ANSWERS.get(self.path)
        if name is None:
            self.send_error(404)
            return
        body = open(os.path.join(ROOT, name), "rb").read()
        if self.path == "/state" and time.monotonic() >= self.fault_from:
            if self.fault == "hang":
                time.sleep(3600)
            elif self.fault == "slow":
                time.sleep(0.5)
            elif self.fault == "down":
                self.send_error(503)
                return
            elif self.fault == "malformed":
                body = b'{"market": {'
            elif self.fault == "huge":
                body = b" " * (4 * 1024 * 1024)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon gave up on a huge answer, as it should


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Engine.fault = sys.argv[2]
    Engine.fault_from = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    Server(("127.0.0.1", int(sys.argv[1])), Engine).serve_forever()
