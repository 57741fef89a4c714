"""test-http-e2e: the real skvd (CPU backend, the tiny model) behind the real skv-http on a
loopback port, driven by the official openai client, curl and raw sockets.

Checks: models, chat and completions, streamed and not, include_usage; the gateway's text equals
what libskv gives directly (the `skv` CLI) for the same prompt and seed; stop strings; errors as
OpenAI error objects (401 with no or a wrong key, 400 naming the field, 400 context too long,
404 unknown model, 429 busy with Retry-After, 503 with skvd down); raw SSE framing with curl;
a client that disconnects mid-stream is cancelled in skvd (skvd's own metrics and request list);
API keys reloaded on SIGHUP; /metrics parsed by prometheus_client's text parser; /health; 256
concurrent seeded streams each equal to libskv's text alone; TLS with a self-signed certificate.

   python test-http-e2e.py MODEL_DIR        ($SKVD, $SKV_WORKER, $SKVCTL, $SKV_HTTP, $SKV_CLI)
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

SKVD, SKVCTL, SKV_HTTP, SKV_CLI = (os.environ[k] for k in ("SKVD", "SKVCTL", "SKV_HTTP", "SKV_CLI"))
model_dir = sys.argv[1]
tmp = tempfile.mkdtemp(prefix="skv-http-e2e-")
procs = []
KEY, KEY2 = "sk-test-key-0123456789", "sk-second-key-abcdefgh"


def log(*a):
    print("test-http-e2e:", *a, flush=True)


def fail(msg, *logs):
    for p in logs:
        try:
            print(f"--- {p}:\n" + open(p).read()[-6000:])
        except OSError:
            pass
    raise AssertionError(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


sock, admin = f"{tmp}/skvd.sock", f"{tmp}/admin.sock"
skvd_log, http_log = f"{tmp}/skvd.log", f"{tmp}/http.log"
SKVD_INI = """[model]
path = {model_dir}
[engine]
backend = cpu
replicas = 1
threads = 1
[server]
socket = {sock}
admin_socket = {admin}
allow_group =
admin_group =
max_clients = 1024
max_sessions_per_uid = 1024
queue_requests = {queue}
[limits]
max_new_tokens = 8000
[supervisor]
drain_timeout_ms = 2000
"""


def write_skvd_ini(queue):
    write(f"{tmp}/skvd.ini", SKVD_INI.format(model_dir=model_dir, sock=sock, admin=admin, queue=queue))


write_skvd_ini(512)
port = free_port()
base = f"http://127.0.0.1:{port}"
write(f"{tmp}/keys", f"# test keys\n{KEY}\n")
write(f"{tmp}/http.ini", f"""[http]
listen = 127.0.0.1:{port}
api_keys_file = {tmp}/keys
[skvd]
socket = {sock}
admin_socket = {admin}
connect_timeout_ms = 2000
[limits]
max_concurrent_requests = 300
max_connections = 400
""")


def ctl(*args):
    return subprocess.run([SKVCTL, "--socket", admin, "--timeout", "5", *args], capture_output=True, text=True)


def start_skvd():
    p = subprocess.Popen([SKVD, "--config", f"{tmp}/skvd.ini"], stderr=open(skvd_log, "a"))
    procs.append(p)
    deadline = time.time() + 60
    while time.time() < deadline:
        if p.poll() is not None:
            fail("skvd exited while starting", skvd_log)
        r = ctl("--json", "status")
        if r.returncode == 0 and '"ready"' in r.stdout:
            return p
        time.sleep(0.1)
    fail("skvd not ready after 60 s", skvd_log)


def http(method, path, body=None, headers=None, key=KEY):
    h = {"Content-Type": "application/json"} | (headers or {})
    if key:
        h["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def skvd_metric(name, labels=None):
    text = ctl("metrics").stdout
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                return s.value
    return None


def gateway_metrics():
    st, _, text = http("GET", "/metrics", key=None)
    assert st == 200, st
    return {f.name: f for f in text_string_to_metric_families(text)}


def direct(prompt, n, *extra):
    """The same request through libskv (the skv CLI), for the differential checks."""
    r = subprocess.run([SKV_CLI, "--socket", sock, "generate", "--json", "-n", str(n), *extra, prompt],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


try:
    skvd = start_skvd()
    gw = subprocess.Popen([SKV_HTTP, "--config", f"{tmp}/http.ini"], stderr=open(http_log, "w"))
    procs.append(gw)
    for _ in range(100):
        try:
            if http("GET", "/health", key=None)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        fail("skv-http never answered /health with 200", http_log, skvd_log)
    st, _, body = http("GET", "/health", key=None)
    assert json.loads(body)["status"] == "ok", body

    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=60)

    # --- models
    models = client.models.list()
    assert [m.id for m in models.data] == ["m"], models
    name = "m"
    log("ok: models")

    # --- completions: non-streamed equals libskv direct for the same seeded sampling
    prompt = "The quick brown fox"
    want = direct(prompt, 12, "--temperature", "0.8", "--top-p", "0.95", "--top-k", "40", "--seed", "7", "--ignore-eos")
    r = client.completions.create(model=name, prompt=prompt, max_tokens=12, temperature=0.8, top_p=0.95,
                                  seed=7, extra_body={"top_k": 40, "ignore_eos": True})
    assert r.object == "text_completion" and r.id.startswith("cmpl-"), r
    assert r.choices[0].text == want["text"], (r.choices[0].text, want["text"])
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.prompt_tokens == want["usage"]["prompt_tokens"], r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12
    assert r.system_fingerprint and r.created > 1.7e9 and r.model == name
    # streamed: the same text, chunk by chunk, usage at the end
    chunks = list(client.completions.create(model=name, prompt=prompt, max_tokens=12, temperature=0.8, top_p=0.95, seed=7,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"top_k": 40, "ignore_eos": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == want["text"], (text, want["text"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12, chunks[-1]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    # token ids as the prompt
    r_ids = client.completions.create(model=name, prompt=[1, 2, 3, 4], max_tokens=4, temperature=0)
    assert r_ids.usage.prompt_tokens == 4 and r_ids.usage.completion_tokens <= 4, r_ids.usage
    log("ok: completions (same text as libskv, streamed and not, include_usage, token ids)")

    # --- chat, greedy: streamed equals non-streamed
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
    c1 = client.chat.completions.create(model=name, messages=msgs, max_tokens=10, temperature=0,
                                        extra_body={"ignore_eos": True})
    assert c1.object == "chat.completion" and c1.id.startswith("chatcmpl-")
    assert c1.choices[0].message.role == "assistant" and c1.choices[0].finish_reason == "length"
    assert c1.usage.completion_tokens == 10 and c1.usage.prompt_tokens > 10, c1.usage
    chunks = list(client.chat.completions.create(model=name, messages=msgs, max_tokens=10, temperature=0,
                                                 stream=True, extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == c1.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(getattr(c, "usage", None) is None for c in chunks)  # no include_usage: no usage
    # max_completion_tokens is honoured too
    c2 = client.chat.completions.create(model=name, messages=msgs, max_completion_tokens=3, temperature=0,
                                        extra_body={"ignore_eos": True})
    assert c2.usage.completion_tokens == 3
    log("ok: chat (streamed and not)")

    # --- stop strings: generation ends before the first occurrence, finish_reason stop
    full = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    k = next((i for i in range(4, len(full) - 2) if full.find(full[i:i + 2]) == i and full[i:i + 2].strip()), None)
    assert k is not None, f"no usable stop string in {full!r}"
    stop = full[k:k + 2]
    r = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0, stop=[stop, "\u2603\u2603"],
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "stop" and r.choices[0].text == full[:k], (stop, r.choices[0].text, full)
    chunks = list(client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0, stop=stop,
                                            stream=True, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks) == full[:k]
    assert chunks[-1].choices[0].finish_reason == "stop"
    log(f"ok: stop strings ({stop!r} at {k})")

    # --- errors, as the openai client sees them
    def expect(exc, status, fn, param=None, code=None, part=None):
        try:
            fn()
        except exc as e:
            assert e.status_code == status, (e.status_code, e)
            err = e.body if isinstance(e.body, dict) and "message" in e.body else (e.body or {}).get("error", e.body)
            assert err["message"], err
            if param is not None:
                assert err["param"] == param, err
            if code is not None:
                assert err["code"] == code, err
            if part is not None:
                assert part in err["message"], err
            return e
        raise AssertionError(f"no {exc.__name__}")

    bad = openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong-key-000000", max_retries=0)
    expect(openai.AuthenticationError, 401, lambda: bad.models.list(), code="invalid_api_key")
    expect(openai.AuthenticationError, 401,
           lambda: bad.chat.completions.create(model=name, messages=msgs, max_tokens=2))
    st, hdr, body = http("POST", "/v1/completions", {"model": name, "prompt": "x"}, key=None)
    assert st == 401 and "API key" in json.loads(body)["error"]["message"] and hdr.get("WWW-Authenticate") == "Bearer"
    expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=name, messages=msgs, max_tokens="8"),
           param="max_tokens", part="must be an integer")
    expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=name, messages=msgs, n=2),
           param="n")
    expect(openai.BadRequestError, 400, lambda: client.chat.completions.create(model=name, messages=msgs, logprobs=True),
           param="logprobs")
    expect(openai.BadRequestError, 400,
           lambda: client.chat.completions.create(model=name, messages=[{"role": "user", "content": 5}]),
           param="messages[0].content")
    expect(openai.BadRequestError, 400, lambda: client.completions.create(model=name, prompt="x", temperature=9),
           param="temperature")
    e = expect(openai.BadRequestError, 400,
               lambda: client.completions.create(model=name, prompt=[5] * 9000, max_tokens=8),
               param="prompt", code="context_length_exceeded")
    log("context:", e.message)
    expect(openai.BadRequestError, 400, lambda: client.completions.create(model=name, prompt="x", max_tokens=100000),
           part="max_tokens")
    expect(openai.NotFoundError, 404, lambda: client.completions.create(model="gpt-4", prompt="x"),
           param="model", code="model_not_found")
    st, _, body = http("POST", "/v1/chat/completions", b'{"model": "m", "messages": [')
    assert st == 400 and "not valid JSON" in json.loads(body)["error"]["message"], body
    # a body over max_body_bytes is refused from its Content-Length, before it is sent
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Length: {9 << 20}\r\n\r\n").encode())
    got = s.recv(65536)
    s.close()
    assert got.startswith(b"HTTP/1.1 413 ") and b"max_body_bytes" in got, got
    st, _, body = http("GET", "/v1/chat/completions")
    assert st == 405, st
    st, _, body = http("GET", "/v2/nothing")
    assert st == 404, st
    log("ok: errors 400 (fields, JSON, context), 401, 404, 405, 413")

    # --- raw SSE framing with curl
    r = subprocess.run(["curl", "-sS", "-N", "-i", "--max-time", "60", base + "/v1/chat/completions",
                        "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"model": name, "messages": msgs, "max_tokens": 5, "stream": True,
                                          "temperature": 0, "ignore_eos": True,
                                          "stream_options": {"include_usage": True}})],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    head, _, sse = r.stdout.decode().partition("\r\n\r\n")
    assert "content-type: text/event-stream" in head.lower(), head
    events = sse.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]", events[-3:]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1]), events
    objs = [json.loads(e[6:]) for e in events[:-2]]
    assert sum(1 for o in objs if o["choices"] and o["choices"][0]["delta"].get("content")) <= 5
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] == 5, objs[-1]
    log(f"ok: SSE framing ({len(events) - 1} events)")

    # --- a client that goes away mid-stream: its request is cancelled in skvd
    cancelled0 = skvd_metric("skv:request_success_total", {"finished_reason": "cancelled"}) or 0
    s = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"model": name, "prompt": prompt, "max_tokens": 7000, "stream": True, "ignore_eos": True})
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    got = b""
    while b"data: " not in got:
        got += s.recv(4096)
    assert b" 200 " in got.split(b"\r\n")[0], got[:200]
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if (skvd_metric("skv:request_success_total", {"finished_reason": "cancelled"}) or 0) > cancelled0:
            break
        time.sleep(0.05)
    else:
        fail("the disconnected stream was not cancelled in skvd", http_log, skvd_log)
    reqs = ctl("--json", "requests")
    assert json.loads(reqs.stdout)["requests"] == [], reqs.stdout
    m = gateway_metrics()
    assert m["skv_http_client_disconnects"].samples[0].value >= 1
    log("ok: disconnect mid-stream cancels in skvd")

    # --- busy: skvd reloaded to queue at most 2 requests; a third gets 429 with Retry-After
    write_skvd_ini(2)
    assert ctl("reload", "--wait").returncode == 0
    long = {"model": name, "prompt": prompt, "max_tokens": 7000, "stream": True, "ignore_eos": True}
    holders = []
    for _ in range(2):
        h = socket.create_connection(("127.0.0.1", port))
        b = json.dumps(long)
        h.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   f"Content-Length: {len(b)}\r\n\r\n{b}").encode())
        got = b""
        while b"data: " not in got:
            got += h.recv(4096)
        holders.append(h)
    st, hdr, body = http("POST", "/v1/completions", {"model": name, "prompt": "x", "max_tokens": 2})
    assert st == 429 and int(hdr["Retry-After"]) >= 1, (st, hdr, body)
    assert json.loads(body)["error"]["type"] == "rate_limit_error", body
    e = expect(openai.RateLimitError, 429, lambda: client.completions.create(model=name, prompt="x", max_tokens=2))
    for h in holders:
        h.close()
    write_skvd_ini(512)
    assert ctl("reload", "--wait").returncode == 0
    log("ok: 429 busy with Retry-After:", hdr["Retry-After"])

    # --- /metrics: Prometheus text that a Prometheus parser reads, the gateway's and skvd's
    deadline = time.time() + 10
    while time.time() < deadline and json.loads(ctl("--json", "requests").stdout)["requests"]:
        time.sleep(0.05)
    m = gateway_metrics()
    req = {(s.labels["path"], s.labels["code"]): s.value for s in m["skv_http_requests"].samples
           if s.name == "skv_http_requests_total"}
    assert req[("/v1/completions", "200")] >= 5 and req[("/v1/chat/completions", "400")] >= 3, req
    assert req[("/v1/completions", "429")] >= 2 and req[("/v1/completions", "401")] >= 1, req
    dur = m["skv_http_request_duration_seconds"]
    inf = [s for s in dur.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"
           and s.labels["path"] == "/v1/completions"]
    assert inf and inf[0].value >= 5, inf
    assert m["skv_http_time_to_first_token_seconds"].type == "histogram"
    assert m["skv_http_generation_tokens"].samples[0].value > 50
    assert m["skv_http_skvd_metrics_up"].samples[0].value == 1
    for h in ("skv_http_overhead_seconds", "skv_http_stream_delay_seconds"):
        count = [x.value for x in m[h].samples if x.name == h + "_count"]
        total = [x.value for x in m[h].samples if x.name == h + "_sum"]
        assert m[h].type == "histogram" and count[0] >= 5 and 0 < total[0] < count[0], (h, count, total)
    assert "skv:num_requests_running" in m and "skv:e2e_request_latency_seconds" in m, sorted(m)
    log("ok: /metrics parses (gateway and skvd)")

    # --- load: 256 concurrent streams through the gateway, each seeded, the same text as
    # through libskv alone (the CPU backend's rows do not depend on the batch)
    import threading
    N = 256
    results = [None] * N

    def stream_one(i):
        try:
            b = json.dumps({"model": name, "prompt": f"Request {i}: once upon a time", "max_tokens": 8,
                            "temperature": 0.9, "top_k": 40, "top_p": 1.0, "seed": 5000 + i, "stream": True,
                            "ignore_eos": True})
            c = socket.create_connection(("127.0.0.1", port), timeout=120)
            c.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                       f"Connection: close\r\nContent-Length: {len(b)}\r\n\r\n{b}").encode())
            raw = b""
            while chunk := c.recv(65536):
                raw += chunk
            c.close()
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b" 200 " in head.split(b"\r\n")[0], head
            text, done = "", False
            # chunked transfer encoding: size line, data, CRLF
            data = b""
            while body:
                size_line, _, body = body.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    break
                data += body[:size]
                body = body[size + 2:]
            for ev in data.decode().split("\n\n"):
                if ev == "data: [DONE]":
                    done = True
                elif ev:
                    text += json.loads(ev[6:])["choices"][0]["text"]
            results[i] = (text, done)
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=stream_one, args=(i,)) for i in range(N)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    took = time.time() - t0
    errors = [r for r in results if not isinstance(r, tuple)]
    if errors:
        fail(f"{len(errors)} of {N} streams failed: {errors[:3]}", http_log, skvd_log)
    assert all(done for _, done in results)
    for i in range(N):
        want = direct(f"Request {i}: once upon a time", 8, "--temperature", "0.9", "--top-k", "40", "--top-p", "1",
                      "--seed", str(5000 + i), "--ignore-eos")["text"]
        assert results[i][0] == want, (i, results[i][0], want)
    log(f"ok: {N} concurrent streams, each the same text as libskv alone ({took:.1f} s)")

    # --- TLS through libmicrohttpd's GnuTLS, when openssl can make a certificate
    if subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                       "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem"],
                      capture_output=True).returncode == 0:
        tport = free_port()
        write(f"{tmp}/tls.ini", f"""[http]
listen = 127.0.0.1:{tport}
allow_unauthenticated = yes
tls_cert = {tmp}/cert.pem
tls_key = {tmp}/key.pem
[skvd]
socket = {sock}
admin_socket = {admin}
""")
        tls = subprocess.Popen([SKV_HTTP, "--config", f"{tmp}/tls.ini"], stderr=open(f"{tmp}/tls.log", "w"))
        procs.append(tls)
        for _ in range(100):
            r = subprocess.run(["curl", "-sS", "--cacert", f"{tmp}/cert.pem", f"https://127.0.0.1:{tport}/health"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert json.loads(r.stdout)["status"] == "ok", (r.stdout, r.stderr)
        r = subprocess.run(["curl", "-sS", "--cacert", f"{tmp}/cert.pem", f"https://127.0.0.1:{tport}/v1/completions",
                            "-d", json.dumps({"model": name, "prompt": prompt, "max_tokens": 3, "temperature": 0})],
                           capture_output=True, text=True)
        assert json.loads(r.stdout)["usage"]["completion_tokens"] >= 1, r.stdout + r.stderr
        r = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{tport}/health"], capture_output=True, text=True)
        assert r.returncode != 0 or "status" not in r.stdout, "plain HTTP answered on the TLS port"
        tls.send_signal(signal.SIGTERM)
        assert tls.wait(timeout=30) == 0
        log("ok: TLS")
    else:
        log("note: openssl could not make a certificate: TLS not tested")

    # --- API keys reloaded on SIGHUP; a broken file keeps the old keys
    write(f"{tmp}/keys", f"{KEY2}\n")
    gw.send_signal(signal.SIGHUP)
    new = openai.OpenAI(base_url=base + "/v1", api_key=KEY2, max_retries=0)
    for _ in range(50):
        try:
            new.models.list()
            break
        except openai.AuthenticationError:
            time.sleep(0.1)
    else:
        fail("the new key was not accepted after SIGHUP", http_log)
    expect(openai.AuthenticationError, 401, lambda: client.models.list())
    write(f"{tmp}/keys", "short\n")
    gw.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    new.models.list()
    assert "the old keys stay in force" in open(http_log).read()
    client = new
    log("ok: API keys reloaded on SIGHUP")

    # --- skvd down: 503, and /health says so
    skvd.send_signal(signal.SIGTERM)
    skvd.wait(timeout=30)
    e = expect(openai.InternalServerError, 503, lambda: client.chat.completions.create(model=name, messages=msgs,
                                                                                      max_tokens=2))
    st, hdr, body = http("GET", "/health", key=None)
    assert st == 503 and json.loads(body)["status"] == "unavailable" and hdr.get("Retry-After"), (st, body)
    st, _, body = http("GET", "/v1/models", key=KEY2)
    assert st == 503, st
    # and back: skvd restarted, the gateway reconnects by itself
    start_skvd()
    r = client.completions.create(model=name, prompt=prompt, max_tokens=3, temperature=0)
    assert r.usage.completion_tokens >= 1
    log("ok: 503 while skvd is down; served again after it restarts")

    gw.send_signal(signal.SIGTERM)
    assert gw.wait(timeout=30) == 0, "skv-http did not exit 0 on SIGTERM"
    # a sanitizer build reports and goes on (UBSan) or reports at exit (LeakSanitizer)
    for path in (http_log, f"{tmp}/tls.log", skvd_log):
        if os.path.exists(path) and any(w in open(path, errors="replace").read()
                                        for w in ("runtime error:", "Sanitizer")):
            fail(f"a sanitizer report in {path}", path)
    log("all passed")
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["rm", "-rf", tmp])
