"""Local fakes of the model APIs and OAuth token endpoints the agent CLIs talk to.

One HTTPS server (a certificate for every name below, from the test's CA) that answers by
Host header: the Anthropic Messages API (SSE and JSON), the OpenAI Responses API (API key
on api.openai.com, ChatGPT login on chatgpt.com), the Gemini API and Google's Code Assist
API, and the three providers' token endpoints. Credentials are checked against the state
file (argv[4]): a request with an unknown credential gets 401. A refresh with a known
refresh token mints a new access token (and, like Anthropic and OpenAI, a new refresh
token). Every request is one JSON line in the log (argv[3]). The port goes to argv[5].

usage: fakes.py CERT KEY LOG STATE PORTFILE
"""

import base64
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CERT, KEY, LOG, STATE, PORTFILE = sys.argv[1:6]
REPLY = os.environ.get("FAKE_REPLY", "PADDOCK-FAKE-REPLY")
LOCK = threading.Lock()

with open(STATE) as f:
    S = json.load(f)
# Tokens the server accepts, per kind; minted ones are added.
VALID = {
    "anthropic_key": {S.get("anthropic_key")},
    "claude_access": {S.get("claude_access")},
    "claude_refresh": {S.get("claude_refresh")},
    "openai_key": {S.get("openai_key")},
    "codex_access": {S.get("codex_access")},
    "codex_refresh": {S.get("codex_refresh")},
    "gemini_key": {S.get("gemini_key")},
    "google_access": {S.get("google_access")},
    "google_refresh": {S.get("google_refresh")},
}
for kind in VALID:
    VALID[kind].discard(None)
# Access tokens that are known but expired (a refresh is needed).
EXPIRED = set(S.get("expired", []))
MINTED = [0]


def b64url(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def jwt(claims):
    return "%s.%s.%s" % (b64url({"alg": "RS256", "typ": "JWT"}), b64url(claims), "c2ln" * 10)


def mint(prefix):
    with LOCK:
        MINTED[0] += 1
        return "%s%d%s" % (prefix, MINTED[0], "x" * 40)


def log(entry):
    with LOCK:
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(n) if n else b""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        return data

    def send(self, code, obj=None, ctype="application/json", raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def sse(self, events):
        data = b"".join(
            ("event: %s\ndata: %s\n\n" % (e, json.dumps(d)) if e else "data: %s\n\n" % json.dumps(d)).encode()
            for e, d in events
        )
        self.send(200, ctype="text/event-stream", raw=data)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_HEAD(self):
        self.handle_any("HEAD")

    def handle_any(self, method):
        host = (self.headers.get("host") or "").split(":")[0]
        if host in ("127.0.0.1", "localhost"):  # a CLI pointed here by its base-URL variable
            host = "api.anthropic.com"
        path = self.path
        body = self.body() if method == "POST" else b""
        auth = self.headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        entry = {
            "t": time.time(),
            "host": host,
            "method": method,
            "path": path,
            "authorization": auth,
            "x-api-key": self.headers.get("x-api-key"),
            "x-goog-api-key": self.headers.get("x-goog-api-key"),
            "chatgpt-account-id": self.headers.get("chatgpt-account-id"),
            "anthropic-beta": self.headers.get("anthropic-beta"),
        }
        try:
            status = self.route(method, host, path, body, bearer, entry)
        except Exception as e:  # never hang a client: answer, and log why
            entry["error"] = repr(e)
            status = 500
            try:
                self.send(500, {"error": repr(e)})
            except Exception:
                pass
        entry["status"] = status
        log(entry)

    def unauthorized(self, entry, why):
        entry["auth_ok"] = False
        entry["why"] = why
        self.send(401, {"error": {"type": "authentication_error", "message": why}})
        return 401

    def route(self, method, host, path, body, bearer, entry):
        p = path.split("?")[0]
        # ---- token endpoints
        if method == "POST" and (
            (host in ("console.anthropic.com", "platform.claude.com") and p == "/v1/oauth/token")
            or (host == "auth.openai.com" and p == "/oauth/token")
            or (host == "oauth2.googleapis.com" and p == "/token")
        ):
            text = body.decode("utf-8", "replace")
            try:
                fields = json.loads(text)
            except ValueError:
                from urllib.parse import parse_qs

                fields = {k: v[0] for k, v in parse_qs(text).items()}
            entry["body"] = fields
            rt = fields.get("refresh_token")
            kind = {"auth.openai.com": "codex", "oauth2.googleapis.com": "google"}.get(host, "claude")
            if rt not in VALID[kind + "_refresh"]:
                entry["auth_ok"] = False
                self.send(400, {"error": "invalid_grant"})
                return 400
            entry["auth_ok"] = True
            if kind == "claude":
                access, refresh = mint("sk-ant-oat01-minted"), mint("sk-ant-ort01-minted")
                VALID["claude_access"].add(access)
                VALID["claude_refresh"].discard(rt)
                VALID["claude_refresh"].add(refresh)
                out = {"access_token": access, "refresh_token": refresh, "expires_in": 28800, "token_type": "Bearer"}
            elif kind == "codex":
                access = jwt({"exp": int(time.time()) + 864000, "n": mint("")})
                refresh = mint("rt_minted")
                VALID["codex_access"].add(access)
                VALID["codex_refresh"].discard(rt)
                VALID["codex_refresh"].add(refresh)
                out = {"access_token": access, "refresh_token": refresh, "id_token": S.get("codex_id_token")}
            else:
                access = mint("ya29.minted")
                VALID["google_access"].add(access)
                out = {"access_token": access, "expires_in": 3599, "token_type": "Bearer", "scope": "openid"}
            entry["minted"] = access
            self.send(200, out)
            return 200

        # ---- Anthropic
        if host in ("platform.claude.com", "console.anthropic.com") and p == "/v1/oauth/hello":
            self.send(200, {"message": "hello"})
            return 200
        if host == "api.anthropic.com":
            key = self.headers.get("x-api-key")
            if key in VALID["anthropic_key"]:
                entry["auth_ok"] = True
            elif bearer in VALID["claude_access"] and bearer not in EXPIRED:
                entry["auth_ok"] = True
            else:
                return self.unauthorized(entry, "invalid x-api-key or bearer token")
            if p == "/api/hello":
                self.send(200, {"message": "hello"})
                return 200
            if p.startswith("/v1/messages/count_tokens"):
                self.send(200, {"input_tokens": 5})
                return 200
            if p == "/v1/messages" and method == "POST":
                req = json.loads(body or b"{}")
                entry["model"] = req.get("model")
                msg = {
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": req.get("model", "fake"),
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 5, "output_tokens": 1},
                }
                if not req.get("stream"):
                    msg["content"] = [{"type": "text", "text": REPLY}]
                    msg["stop_reason"] = "end_turn"
                    self.send(200, msg)
                    return 200
                self.sse([
                    ("message_start", {"type": "message_start", "message": msg}),
                    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": REPLY}}),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3}}),
                    ("message_stop", {"type": "message_stop"}),
                ])
                return 200
            self.send(404, {"error": {"type": "not_found_error", "message": "fake: " + p}})
            return 404

        # ---- OpenAI
        if method == "POST" and (host == "api.openai.com" and p == "/v1/responses") or (
            method == "POST" and host == "chatgpt.com" and p == "/backend-api/codex/responses"
        ):
            if host == "api.openai.com":
                ok = bearer in VALID["openai_key"]
            else:
                ok = bearer in VALID["codex_access"] and bearer not in EXPIRED
            if not ok:
                return self.unauthorized(entry, "invalid bearer token")
            entry["auth_ok"] = True
            req = json.loads(body or b"{}")
            entry["model"] = req.get("model")
            item = {"type": "message", "id": "msg_fake", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
            resp = {"id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": "completed",
                    "model": req.get("model", "fake"), "output": [item],
                    "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 3,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8}}
            created = dict(resp, status="in_progress", output=[])
            self.sse([
                ("response.created", {"type": "response.created", "response": created}),
                ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                                "item": dict(item, status="in_progress", content=[])}),
                ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_fake",
                                                "output_index": 0, "content_index": 0, "delta": REPLY}),
                ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
                ("response.completed", {"type": "response.completed", "response": resp}),
            ])
            return 200

        if host == "chatgpt.com" and p in ("/backend-api/wham/accounts/check", "/backend-api/api/codex/accounts/check"):
            if bearer not in VALID["codex_access"]:
                return self.unauthorized(entry, "invalid bearer token")
            acc = S.get("codex_account", "acc-123")
            info = {"account_id": acc, "id": acc, "account_user_id": "user-1__" + acc, "structure": "personal",
                    "plan_type": "plus", "is_deactivated": False, "name": None,
                    "workspace_backend_origin": "https://chatgpt.com", "can_access_with_session": True}
            self.send(200, {"accounts": [dict(info, account=info)], "account_ordering": [acc],
                            "workspace_backend_origin": "https://chatgpt.com"})
            return 200

        # ---- Google
        if host == "generativelanguage.googleapis.com":
            if self.headers.get("x-goog-api-key") not in VALID["gemini_key"] and (
                "key=" not in path or path.split("key=")[1].split("&")[0] not in VALID["gemini_key"]
            ):
                return self.unauthorized(entry, "invalid API key")
            entry["auth_ok"] = True
            return self.gemini(p, body, wrap=False)
        if host == "cloudcode-pa.googleapis.com":
            if bearer not in VALID["google_access"] or bearer in EXPIRED:
                return self.unauthorized(entry, "invalid bearer token")
            entry["auth_ok"] = True
            if p.endswith(":loadCodeAssist"):
                self.send(200, {"currentTier": {"id": "free-tier", "name": "Free"},
                                "allowedTiers": [{"id": "free-tier", "isDefault": True}],
                                "cloudaicompanionProject": "fake-project"})
                return 200
            if p.endswith(":onboardUser"):
                self.send(200, {"done": True, "response": {"cloudaicompanionProject": {"id": "fake-project"}}})
                return 200
            return self.gemini(p, body, wrap=True)
        if host == "www.googleapis.com" and "userinfo" in p:
            self.send(200, {"id": "1", "email": "agent@example.com", "verified_email": True, "name": "Agent"})
            return 200

        self.send(404, {"error": "fake: no such endpoint %s%s" % (host, p)})
        return 404

    def gemini(self, p, body, wrap):
        if p.endswith(":countTokens"):
            self.send(200, {"totalTokens": 5})
            return 200
        chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": REPLY}]}, "finishReason": "STOP", "index": 0}],
                 "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
                 "modelVersion": "fake"}
        if wrap:
            chunk = {"response": chunk}
        if p.endswith(":streamGenerateContent"):
            self.sse([(None, chunk)])
        else:
            self.send(200, chunk)
        return 200


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
