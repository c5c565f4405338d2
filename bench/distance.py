"""The distance task of bench.py (`./bench/run --task distance`): misses with the bucket a
round trip away, as for a Lambda@Edge far from the bucket's region (issue 13).

Each handler runs as CloudFront runs it: `bench/sharp/origin-driver.mjs` imports it, sends
origin-request events, and follows a rewritten request with a GET of the object from the
bucket, as CloudFront does (a viewer waits for that too). Every store call, the handler's and
CloudFront's, goes through `scripts/s3_proxy.py` to moto's S3 server, D ms away; the proxy logs
each request, so the harness counts the store requests and the sequential round trips each
miss made.

Handlers:
- imgedge: the packaged function (Node shim `infra/edge-shim/index.mjs` + the `bootstrap` of
  this build + config.json with endpoint_url = the proxy);
- imgedge before issue 13: the same shim with the `bootstrap` built from the commit before
  the round-trip work (bench/run builds it once; the shim's Runtime API protocol is the same);
- sharp: `bench/sharp/origin-request.mjs`, a sharp + @aws-sdk/client-s3 handler the way AWS's
  samples write one (GetObject → sharp → PutObject → rewrite).

Cases (each event a real miss: the handler has no cache, and a new variant has a query never
asked before): the master (no query), a variant that exists and is fresh (small: answered
with its bytes by the current code), a new variant, and a fresh variant above the 700 KiB
generated-response limit (a noise PNG: a rewrite, then CloudFront's GET).

Then the init phase: the first event of a fresh process (sent at once after the module
loaded, and 1 s later) against the later events, current vs old bootstrap.
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image

import bench
from bench import fmt_ms, median, p95

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))  # the proxy the fault tests use too
from s3_proxy import Logged, S3Proxy  # noqa: E402
BUCKET = "imgedge-distance"
WARM_UP = "/_variants/warm-up"  # the current bootstrap's HEAD during init (not an event's)
MOTO_AUTH = "AWS4-HMAC-SHA256 Credential=bench/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


class Case:
    def __init__(self, name: str, master: str, query: str, fresh: bool, new: bool = False):
        self.name, self.master, self.query, self.fresh, self.new = name, master, query, fresh, new


CASES = [
    Case("master", "photo", "", fresh=False),
    Case("fresh variant", "photo", "w=256&fmt=webp", fresh=True),
    # Deleted from the bucket (directly, not through the proxy) before each miss.
    Case("new variant", "photo", "w=512&fmt=webp", fresh=False, new=True),
    Case("fresh variant > 700 KiB", "noise", "w=600", fresh=True),
]


def s3_call(endpoint: str, method: str, path: str) -> bytes:
    """A bare S3 call to moto (its routing needs an Authorization header, not a signature)."""
    req = urllib.request.Request(endpoint + path, method=method, headers={"authorization": MOTO_AUTH})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def delete_variants(endpoint: str, side: str, case: "Case") -> None:
    """Every handler's variants of `case` for `side` (whatever its key scheme), so the next
    miss makes a new one."""
    xml = s3_call(endpoint, "GET", f"/{BUCKET}?list-type=2&prefix=_variants/").decode()
    name = case.query.replace("&", ",")
    for key in re.findall(r"<Key>([^<]*)</Key>", xml):
        key = html.unescape(key)
        if f"/outputs/distance/{side}/{case.master}.png/{name}" in key:
            s3_call(endpoint, "DELETE", f"/{BUCKET}/" + urllib.parse.quote(key))


class Driver:
    """One `origin-driver.mjs` process around one handler."""

    def __init__(self, handler: str, origin_url: str, env: dict, log: str):
        # stderr (the shim's and the bootstrap's diagnostics) goes to a file, shown on failure.
        self.log = log
        with open(log, "a") as err:
            self.proc = subprocess.Popen(
                ["node", os.path.join(HERE, "sharp", "origin-driver.mjs"), handler, origin_url, BUCKET],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
                cwd=os.path.join(HERE, "sharp"),
            )
        self.ready = self._reply()[0]

    def _reply(self) -> tuple[dict, list[dict]]:
        """The driver's next answer, and the bootstrap's request records logged before it."""
        records = []
        assert self.proc.stdout
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                reply = json.loads(line[3:])
                if reply.get("error"):
                    raise RuntimeError(f"origin driver: {reply['error']}\n{self._log_tail()}")
                return reply, records
            if line.startswith("{") and '"store_round_trips"' in line:
                records.append(json.loads(line))
        raise RuntimeError(f"origin driver exited (status {self.proc.wait()})\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with open(self.log) as f:
            return "".join(f.readlines()[-30:])

    def send(self, event: dict) -> tuple[dict, list[dict]]:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"event": event}) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def function_dir(work: str, name: str, bootstrap: str, endpoint: str) -> str:
    """A directory laid out like the function zip; returns its index.mjs."""
    d = tempfile.mkdtemp(prefix=f"distance-{name}-", dir=work)
    shutil.copy(os.path.join(ROOT, "infra", "edge-shim", "index.mjs"), d)
    os.symlink(os.path.abspath(bootstrap), os.path.join(d, "bootstrap"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"bucket": BUCKET, "region": "us-east-1", "endpoint_url": endpoint,
                   "max_pixels": 50_000_000, "max_bytes": 33_554_432}, f)
    return os.path.join(d, "index.mjs")


def critical_path(reqs: list[Logged], delay_s: float) -> tuple[int, float]:
    """Sequential round trips, and the S3 server's own time (ms), on the critical path.

    A request that reached the proxy after another one's answer had come back from the server
    waited for it (a sequential step); one that arrived before ran beside it. The critical path
    is the longest chain of such steps; each step costs its round trips (2 on a new connection:
    the proxy delayed it twice) and the server's time answering it. At D = 0 the round trips
    are the sequential requests (a handshake costs nothing there)."""
    best: list[tuple[int, float]] = []  # per request: the longest chain ending with it
    for i, r in enumerate(reqs):
        trips = max(1, round((r.sent - r.arrived) / delay_s)) if delay_s > 0 else 1
        before = [best[j] for j, q in enumerate(reqs[:i]) if q.done <= r.arrived]
        prev = max(before, default=(0, 0.0))
        best.append((prev[0] + trips, prev[1] + max(0.0, r.done - r.sent)))
    trips, server = max(best, default=(0, 0.0))
    return trips, server * 1000


def request_log(reqs: list[Logged]) -> list[dict]:
    """The proxy's log of one miss, times in ms from its first request (for the raw JSON)."""
    t0 = reqs[0].arrived if reqs else 0.0
    return [{"listener": r.listener, "conn": r.conn, "new_conn": r.new_conn, "method": r.method,
             "target": r.target, "status": r.status, "arrived": round((r.arrived - t0) * 1e3, 2),
             "sent": round((r.sent - t0) * 1e3, 2), "done": round((r.done - t0) * 1e3, 2)} for r in reqs]


def event_for(side: str, case: Case) -> dict:
    return bench.origin_request_event(f"/outputs/distance/{side}/{case.master}.png", case.query, BUCKET)


def miss(proxy: S3Proxy, driver: Driver, side: str, case: Case) -> dict:
    """One event through the driver: latency, answer shape, the store requests it made."""
    if case.new:
        delete_variants(proxy.upstream_url, side, case)
    proxy.take()
    reply, records = driver.send(event_for(side, case))
    if reply["status"] != 200:
        raise RuntimeError(f"{side} / {case.name}: {reply}")
    reqs = proxy.take()
    fn = [r for r in reqs if r.listener == "function" and not r.target.endswith(WARM_UP)]
    trips, server_ms = critical_path([r for r in reqs if not r.target.endswith(WARM_UP)], proxy.delay_ms / 1000)
    render = None
    if records:
        rec = records[-1]
        render = rec["decode_ms"] + rec["resize_ms"] + rec["encode_ms"] if rec["outcome"] == "built" else 0.0
    return {
        "ms": reply["total_ms"],
        "handler_ms": reply["handler_ms"],
        "shape": reply["shape"],
        "bytes": reply["bytes"],
        "fn_requests": len(fn),
        "fn_new_conns": sum(r.new_conn for r in fn),
        "cf_requests": sum(r.listener == "cloudfront" for r in reqs),
        "trips": trips,
        "server_ms": server_ms,
        "warm_up_seen": any(r.target.endswith(WARM_UP) for r in reqs),
        "render_ms": render,
        "outcome": records[-1]["outcome"] if records else None,
        "handler_round_trips": records[-1]["store_round_trips"] if records else None,
        "requests": request_log(reqs),
    }


def noise_png(path: str) -> None:
    """800×600 RGB noise: incompressible, so its 600w PNG variant is ~810 KB (> 700 KiB)."""
    rgb = np.random.default_rng(13).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def bench_distance(args) -> dict | None:
    bootstrap = os.path.join(args.bin_dir, "bootstrap")
    if not shutil.which("moto_server") or not os.path.exists(bootstrap):
        print("\n### distance: skipped (needs moto_server and the bootstrap)")
        return None
    old_bootstrap = os.path.join(args.old_bin_dir, "bootstrap") if args.old_bin_dir else None
    if old_bootstrap and not os.path.exists(old_bootstrap):
        raise SystemExit(f"--old-bin-dir: {old_bootstrap} is missing")
    work = os.path.join(args.work, "distance")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    # Copies: a build in the shared target dir during the run cannot swap them.
    bootstrap = shutil.copy(bootstrap, os.path.join(work, "bootstrap"))
    if old_bootstrap:
        old_bootstrap = shutil.copy(old_bootstrap, os.path.join(work, "bootstrap-before"))
    noise = os.path.join(work, "noise-800x600.png")
    noise_png(noise)
    photo = os.path.join(args.work, "masters", "astronaut-1024.png")

    moto, endpoint = bench.start_moto()
    port = int(endpoint.rsplit(":", 1)[1])
    # CloudFront's connections to its origin serve every viewer: taken as open (no handshake).
    proxy = S3Proxy(("127.0.0.1", port)).start(["function", "cloudfront"], open_listeners=("cloudfront",))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "NODE_NO_WARNINGS": "1"}
    sides = {"imgedge": bootstrap}
    if old_bootstrap:
        sides["imgedge before issue 13"] = old_bootstrap
    sides["sharp"] = None
    slug = {name: f"s{i}" for i, name in enumerate(sides)}
    drivers: dict[str, Driver] = {}
    try:
        bench.s3_seed({**env, "AWS_ENDPOINT_URL": endpoint}, BUCKET, {
            f"outputs/distance/{slug[s]}/{m}.png": f for s in sides for m, f in (("photo", photo), ("noise", noise))
        })
        for name, boot in sides.items():
            if boot:
                handler = function_dir(work, slug[name], boot, proxy.url("function"))
                drivers[name] = Driver(handler, proxy.url("cloudfront"), env, os.path.join(work, f"{slug[name]}.log"))
            else:
                handler = os.path.join(HERE, "sharp", "origin-request.mjs")
                drivers[name] = Driver(handler, proxy.url("cloudfront"),
                                       {**env, "AWS_ENDPOINT_URL": proxy.url("function"), "BUCKET": BUCKET},
                                       os.path.join(work, f"{slug[name]}.log"))
        # The fresh cases' variants, made once (the sharp handler renders every time anyway).
        for name, d in drivers.items():
            for case in CASES:
                if case.fresh:
                    miss(proxy, d, slug[name], case)

        runs: dict[int, dict] = {}
        for delay in args.distance_delays:
            proxy.delay_ms = delay
            samples: dict[tuple[str, str], list[dict]] = {(c.name, s): [] for c in CASES for s in sides}
            names = list(sides)
            for i in range(args.distance_iters + 1):  # round 0 warms the connections: not counted
                order = names[i % len(names):] + names[: i % len(names)]
                for case in CASES:
                    for name in order:
                        m = miss(proxy, drivers[name], slug[name], case)
                        if i > 0:
                            samples[(case.name, name)].append(m)
            runs[delay] = samples
        init = None if args.quick else bench_init(args, proxy, env, sides, slug, work)
    finally:
        for d in drivers.values():
            d.close()
        proxy.stop()
        moto.terminate()
        moto.wait(timeout=10)
    res = summarise(runs, list(sides))
    print_distance(res, args)
    if init:
        print_init(init)
    return {"runs": res, "init": init}


def bench_init(args, proxy, env, sides, slug, work) -> dict:
    """The first event of a fresh process against its later events: what opening the bucket
    connection during init saves (the current bootstrap HEADs `_variants/warm-up` at start)."""
    delay = args.distance_init_delay
    proxy.delay_ms = delay
    case = CASES[1]  # the fresh variant: one round trip when the connections are warm
    out = {}
    for name, boot in sides.items():
        if not boot:
            continue
        modes: dict[str, list[dict]] = {"at once": [], "after 1 s": [], "later": []}
        for rep in range(args.distance_init_reps):
            for mode in ("at once", "after 1 s"):
                handler = function_dir(work, f"init-{slug[name]}", boot, proxy.url("function"))
                proxy.take()
                driver = Driver(handler, proxy.url("cloudfront"), env, os.path.join(work, f"init-{slug[name]}.log"))
                try:
                    if mode == "after 1 s":
                        time.sleep(1.0)
                    warm = [r for r in proxy.take() if r.target.endswith(WARM_UP)]
                    first = miss(proxy, driver, slug[name], case)
                    first["warm_up_before"] = bool(warm)
                    modes[mode].append(first)
                    for _ in range(3):
                        modes["later"].append(miss(proxy, driver, slug[name], case))
                finally:
                    driver.close()
        out[name] = modes
    return {"delay_ms": delay, "reps": args.distance_init_reps, "sides": out}


def summarise(runs: dict[int, dict], sides: list[str]) -> dict:
    base = runs.get(0)
    res = {}
    for delay, samples in runs.items():
        rows = []
        for case in CASES:
            for side in sides:
                ms = samples[(case.name, side)]
                med = median([m["ms"] for m in ms])
                implied = None
                if delay > 0 and base:
                    implied = (med - median([m["ms"] for m in base[(case.name, side)]])) / delay
                trips_seen = sorted({m["trips"] for m in ms})
                renders = [m["render_ms"] for m in ms if m["render_ms"]]
                rows.append({
                    "case": case.name, "side": side, "n": len(ms),
                    "median_ms": med, "p95_ms": p95([m["ms"] for m in ms]),
                    "shapes": sorted({m["shape"] for m in ms}),
                    "fn_requests": sorted({m["fn_requests"] for m in ms}),
                    "cf_requests": sorted({m["cf_requests"] for m in ms}),
                    "trips": trips_seen,
                    "implied_trips": implied,
                    "render_ms": median(renders) if renders else None,
                    "server_ms": median([m["server_ms"] for m in ms]),
                    # What the miss costs beyond its round trips and render (the "+ 20 ms"),
                    # and the part of that not spent in the S3 server.
                    "overhead_ms": median([m["ms"] - m["trips"] * delay - (m["render_ms"] or 0) for m in ms])
                    if delay > 0 else None,
                    "own_ms": median([m["ms"] - m["trips"] * delay - (m["render_ms"] or 0) - m["server_ms"]
                                      for m in ms]) if delay > 0 else None,
                    "handler_round_trips": sorted({m["handler_round_trips"] for m in ms if m["handler_round_trips"] is not None}),
                    "samples": ms,
                })
        res[delay] = rows
    return res


def _set(xs: list) -> str:
    return "/".join(str(x) for x in xs) if xs else "–"


def print_distance(res: dict, args) -> None:
    print("\n### Misses at a distance: every store call D ms away (latency proxy → moto S3)\n")
    print(
        f"Misses per case, handler and D: {args.distance_iters}, interleaved; latency = the event "
        "sent → the answer, plus CloudFront's GET of the object when the answer is a rewrite. "
        "Requests = the function's + CloudFront's; round trips = sequential, on the critical path of "
        "the requests logged at the proxy (a new connection of the function costs one more; at D = 0: "
        "sequential requests); S3 server = moto's own time on that path (median)."
    )
    for delay, rows in res.items():
        print(f"\n#### D = {delay} ms per request\n")
        print("| case | handler | answer | requests | round trips | median ms | p95 ms | S3 server ms "
              "| (median − median at 0 ms) / D |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            implied = f"{r['implied_trips']:.2f}" if r["implied_trips"] is not None else "–"
            print(
                f"| {r['case']} | {r['side']} | {_set(r['shapes'])} | {_set(r['fn_requests'])} + {_set(r['cf_requests'])} "
                f"| {_set(r['trips'])} | {fmt_ms(r['median_ms'])} | {fmt_ms(r['p95_ms'])} | {fmt_ms(r['server_ms'])} "
                f"| {implied} |"
            )
    delay = max(res)
    if delay <= 0:
        return
    rows = {(r["case"], r["side"]): r for r in res[delay]}
    cur = {c.name: rows[(c.name, "imgedge")] for c in CASES}

    def verdict(r: dict, trips: int, render: float) -> str:
        # Two readings of "a round trip": D alone (the proxy's delay), or D plus the bucket's
        # own time answering (what a round trip to S3 from far away is: propagation and S3's
        # service time). The second is the fair one for moto, a Python server that answers
        # concurrent requests in turn; both are printed so neither hides the other.
        limit = trips * delay + render + 20
        beyond = (f"beyond round trips and render: {fmt_ms(r['overhead_ms'])} ms, of which the S3 server "
                  f"{fmt_ms(r['server_ms'])}, ours {fmt_ms(r['own_ms'])}")
        if r["median_ms"] <= limit:
            return f"met ({beyond})"
        if r["own_ms"] <= 20:
            return (f"met counting the S3 server's time in its round trips ({beyond}); "
                    f"with D alone as the round trip, over by {fmt_ms(r['median_ms'] - limit)} ms")
        return f"not met by {fmt_ms(r['median_ms'] - limit)} ms ({beyond})"

    print(f"\n#### The targets of issue 13 (imgedge, D = {delay} ms)\n")
    print("| target | measured | status |")
    print("|---|---|---|")
    m = cur["master"]
    print(f"| master: no store call by the function | {_set(m['fn_requests'])} requests | "
          f"{'met' if m['fn_requests'] == [0] else 'not met'} |")
    f = cur["fresh variant"]
    print(f"| fresh variant ≤ 1 round trip + 20 ms = {delay + 20} ms | median {fmt_ms(f['median_ms'])} ms, "
          f"p95 {fmt_ms(f['p95_ms'])} ms; {_set(f['trips'])} round trip(s) | {verdict(f, 1, 0.0)} |")
    n = cur["new variant"]
    render = n["render_ms"] or 0.0
    print(f"| new variant ≤ 3 round trips + render + 20 ms = {fmt_ms(3 * delay + render + 20)} ms "
          f"(render {fmt_ms(render)} ms, median) | median {fmt_ms(n['median_ms'])} ms, p95 {fmt_ms(n['p95_ms'])} ms; "
          f"{_set(n['trips'])} round trips | {verdict(n, 3, render)} |")


def print_init(init: dict) -> None:
    d = init["delay_ms"]
    print(f"\n### The first event of a fresh process (fresh variant, D = {d} ms, {init['reps']} processes per column)\n")
    print("Moto is plain HTTP: a new connection costs one round trip here (TCP's handshake); "
          "against S3, TLS adds at least one more.\n")
    print("| bootstrap | first event, sent at once after the module loaded | first event, sent 1 s later | later events |")
    print("|---|---:|---:|---:|")
    for side, modes in init["sides"].items():
        cells = []
        for mode in ("at once", "after 1 s", "later"):
            ms = modes[mode]
            cells.append(
                f"{fmt_ms(median([m['ms'] for m in ms]))} ms; {_set(sorted({m['trips'] for m in ms}))} round trips, "
                f"{_set(sorted({m['fn_new_conns'] for m in ms}))} new connections"
            )
        print(f"| {side} | " + " | ".join(cells) + " |")
