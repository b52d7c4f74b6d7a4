"""Browser benchmark of the app (issue 13's bar), with Debian's chromium (headless) driven by Playwright.

One invocation starts the token-timestamping upstream (``bench/ui_stub.py``) and one ``lisa serve`` (no local
models, embedded PostgreSQL in a fresh data dir, the app mounted at /ui), signs in in the browser, then measures:

* **Usable after navigation**: ``page.goto(/ui/)`` as a signed-in user until the chat tab can take a question (the
  message box is there and enabled and the model picker holds the default model, i.e. the page's load events
  answered), by ``performance.now()`` (from the navigation's start) in a requestAnimationFrame poll.
* **Token to screen**: a model whose tokens come 200 ms apart, each with a unique marker; the stub notes the wall
  clock when it hands each token to the socket, and a MutationObserver on the chatbot notes ``Date.now()`` when
  each marker first appears in the page. Same machine, same clock: the difference is upstream → LISA's chat route →
  the app → Gradio's stream → the browser's DOM. (Measured from the upstream, so it includes the backend's part.)
* **App overhead per turn**: 20-turn sessions, each turn timed in the page from the click on Send until the
  answer's metadata line is in the DOM (a MutationObserver), against the same 20 turns through the REST API
  directly (``POST /api/sessions/{id}/messages`` read to its last event), same stub model (20 tokens at once).
  The overhead is the difference of the medians.

Reported: the median of ``--runs`` runs of each; and ``uptime`` before and after (the machine is shared). Run it as

    flock /tmp/lisa-bench.lock /work/main/.venv/bin/python -m bench.ui_browser --runs 5

Figures go to stdout and to ``docs/benchmarks.md``, section "Browser (the app)".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from bench import report
from bench.gateway_doc import code_version, write_doc
from bench.measure import log
from bench.processes import REPO, Processes, free_port, http

LOG_DIR = Path(tempfile.gettempdir()) / "lisa-bench-logs"
CHROMIUM = "/usr/bin/chromium"
SECTION = "## Browser (the app)"
STREAM_MODEL, FAST_MODEL = "ui-stream", "ui-fast"
STREAM_TOKENS, STREAM_GAP_MS, FAST_TOKENS = 15, 200, 20
BAR_USABLE_MS, BAR_TOKEN_MS, BAR_OVERHEAD_MS = 2000.0, 300.0, 100.0

OBSERVER = """() => {
  window.__seen = {}; window.__done = {};
  const box = document.querySelector('#lisa-chatbot');
  const mark = /⟦(\\d+):(\\d+)⟧/g;
  const check = () => {
    const now = Date.now(), at = performance.now();
    const text = box.textContent;
    for (const m of text.matchAll(mark)) { const k = m[1] + ':' + m[2]; if (!(k in window.__seen)) window.__seen[k] = now; }
    const bots = box.querySelectorAll('[data-testid="bot"]');
    const n = bots.length;
    if (n && bots[n - 1].textContent.includes('tokens') && !(n in window.__done)) window.__done[n] = at;
  };
  new MutationObserver(check).observe(box, {subtree: true, childList: true, characterData: true});
}"""
USABLE = """() => {
  const box = document.querySelector('#lisa-input textarea');
  const model = document.querySelector('#lisa-model input');
  const ok = !!box && !box.disabled && box.offsetParent !== null && !!model && model.value === '%s';
  if (ok && window.__usable === undefined) window.__usable = performance.now();
  return ok;
}"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def start_servers(procs: Processes, data_dir: Path) -> tuple[str, str, str]:
    stub_port = free_port()
    stub = procs.start("ui-stub", [sys.executable, str(REPO / "bench" / "ui_stub.py"), "--port", str(stub_port)])
    stub_url = f"http://127.0.0.1:{stub_port}"
    stub.wait_ready(stub_url + "/health", 30)
    port = free_port()
    exe = Path(sys.executable).parent / "lisa"
    cmd = [str(exe), "serve", "--no-local-models", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--data-dir", str(data_dir)]
    server = procs.start("lisa-ui", cmd, unset=("LISA_DATABASE_URL",), stop_signal=signal.SIGINT)
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{base}/health", 300)
    token = (data_dir / "admin-token").read_text().strip()
    for model, upstream in (
        (STREAM_MODEL, f"gap-{STREAM_GAP_MS}-{STREAM_TOKENS}"),
        (FAST_MODEL, f"gap-0-{FAST_TOKENS}"),
    ):
        body = {"id": model, "type": "textgen", "hosting": "internal", "base_url": stub_url + "/v1",
                "upstream_model": upstream, "streaming": True}  # fmt: skip
        status, text = http("POST", f"{base}/api/models", body, token)
        if status != 201:
            raise RuntimeError(f"registering {model} gave {status}: {text[:300]}")
    return base, token, stub_url


def default_model(base: str, token: str, model: str) -> None:
    status, text = http("PATCH", f"{base}/api/configuration", {"default_model_id": model}, token)
    if status != 200:
        raise RuntimeError(f"setting the default model gave {status}: {text[:300]}")


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")


def open_chat(page: Page, base: str, model: str) -> float:
    """Navigates to the app; ms from the navigation's start until the chat tab is usable."""
    page.goto(base + "/ui/", wait_until="commit")
    page.wait_for_function(USABLE % model, polling="raf", timeout=60_000)
    return float(page.evaluate("window.__usable"))


def measure_usable(page: Page, base: str, runs: int) -> list[float]:
    samples = []
    open_chat(page, base, STREAM_MODEL)  # warm-up (the first load fills caches)
    for run in range(runs):
        samples.append(open_chat(page, base, STREAM_MODEL))
        log(f"usable run {run + 1}/{runs}: {samples[-1]:.0f} ms")
    return samples


def send(page: Page, text: str) -> None:
    page.fill("#lisa-input textarea", text)
    page.evaluate("() => { window.__t0 = performance.now(); document.querySelector('#lisa-send').click(); }")


def measure_tokens(page: Page, base: str, stub: str, runs: int) -> list[list[float]]:
    per_run = []
    for run in range(runs):
        open_chat(page, base, STREAM_MODEL)
        page.evaluate(OBSERVER)
        httpx.get(stub + "/_sent")  # forget earlier tokens
        send(page, f"Count for me ({run})")
        page.wait_for_function("() => 1 in window.__done", timeout=60_000)
        seen: dict[str, float] = page.evaluate("window.__seen")
        sent: dict[str, float] = httpx.get(stub + "/_sent").json()
        delays = [seen[k] - at for k, at in sent.items() if k in seen]
        if len(delays) != len(sent) or len(sent) != STREAM_TOKENS:
            raise RuntimeError(f"tokens sent {len(sent)}, seen {len(delays)}")
        per_run.append(delays)
        log(f"token run {run + 1}/{runs}: median {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms")
    return per_run


def api_turns(base: str, token: str, turns: int) -> list[float]:
    times = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        session = client.post("/api/sessions", json={"title": "bench api", "model": FAST_MODEL}).json()["id"]
        for turn in range(turns):
            started = time.perf_counter()
            with client.stream("POST", f"/api/sessions/{session}/messages", json={"content": f"turn {turn}"}) as r:
                for _line in r.iter_lines():
                    pass
                if r.status_code != 200:
                    raise RuntimeError(f"API turn: {r.status_code}")
            times.append((time.perf_counter() - started) * 1000)
    return times


def ui_turns(page: Page, base: str, turns: int) -> list[float]:
    open_chat(page, base, FAST_MODEL)
    page.evaluate(OBSERVER)
    times = []
    for turn in range(1, turns + 1):
        send(page, f"turn {turn}")
        page.wait_for_function(f"() => {turn} in window.__done", timeout=60_000)
        times.append(float(page.evaluate(f"window.__done[{turn}] - window.__t0")))
        page.wait_for_function("() => !document.querySelector('#lisa-input textarea').value")
        time.sleep(0.3)  # the sidebar's refresh after the turn, as a person's pause before the next question
    return times


def measure_turns(page: Page, base: str, token: str, runs: int, turns: int) -> dict[str, list[float]]:
    default_model(base, token, FAST_MODEL)
    medians: dict[str, list[float]] = {"ui": [], "api": []}
    for run in range(runs):
        medians["api"].append(statistics.median(api_turns(base, token, turns)))
        medians["ui"].append(statistics.median(ui_turns(page, base, turns)))
        log(f"turn run {run + 1}/{runs}: UI {medians['ui'][-1]:.0f} ms, API {medians['api'][-1]:.0f} ms per turn")
    return medians


def render(args: argparse.Namespace, usable: list[float], tokens: list[list[float]], turns: dict[str, list[float]],
           loads: tuple[str, str], elapsed: float, code: str) -> str:  # fmt: skip
    usable_ms = statistics.median(usable)
    token_medians = [statistics.median(d) for d in tokens]
    token_p95 = [sorted(d)[int(0.95 * (len(d) - 1))] for d in tokens]
    token_ms, worst = statistics.median(token_medians), max(max(d) for d in tokens)
    ui, api = statistics.median(turns["ui"]), statistics.median(turns["api"])
    overhead = ui - api

    def met(value: float, bar: float) -> str:
        return "yes" if value <= bar else "no"

    return "\n".join([
        SECTION,
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min with:",
        "",
        f"    flock /tmp/lisa-bench.lock python -m bench.ui_browser {' '.join(sys.argv[1:])}".rstrip(),
        "",
        *[line.replace(", LiteLLM -", "") for line in report.machine_facts("-")],
        f"- LISA code: {code}; one `lisa serve` worker, no local models, the app mounted at /ui; Debian's chromium "
        "headless through Playwright, 1280x900",
        f"- load (`uptime`) before: `{loads[0]}`; after: `{loads[1]}` (the 2-core machine is shared)",
        f"- upstream: `bench/ui_stub.py`; {STREAM_TOKENS} tokens {STREAM_GAP_MS} ms apart for the token figure, "
        f"{FAST_TOKENS} tokens at once for the turns",
        "",
        f"Median of {args.runs} runs each (runs: usable {', '.join(f'{v:.0f}' for v in usable)} ms; token medians "
        f"{', '.join(f'{v:.0f}' for v in token_medians)} ms; per-turn UI/API medians "
        f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(turns['ui'], turns['api'], strict=True))} ms):",
        "",
        "| measure | value |",
        "|---|--:|",
        f"| chat tab usable after navigation (signed in) | {usable_ms:.0f} ms |",
        f"| token sent by the upstream → shown in the page, median | {token_ms:.0f} ms |",
        f"| the same, p95 per run (median of runs) / worst token seen | {statistics.median(token_p95):.0f} / "
        f"{worst:.0f} ms |",
        f"| a turn through the UI (Send → metadata line shown), median of {args.turns}-turn sessions | {ui:.0f} ms |",
        f"| the same turn through the REST API (request → last event) | {api:.0f} ms |",
        f"| the app's own overhead per turn | {overhead:.0f} ms |",
        "",
        "| bar | value | met |",
        "|---|--:|---|",
        f"| chat tab usable <= {BAR_USABLE_MS:.0f} ms after navigation | {usable_ms:.0f} ms | "
        f"{met(usable_ms, BAR_USABLE_MS)} |",
        f"| streamed token in the browser <= {BAR_TOKEN_MS:.0f} ms after it is sent (median) | {token_ms:.0f} ms | "
        f"{met(token_ms, BAR_TOKEN_MS)} |",
        f"| app overhead per turn, {args.turns}-turn session, < {BAR_OVERHEAD_MS:.0f} ms | {overhead:.0f} ms | "
        f"{met(overhead, BAR_OVERHEAD_MS - 1e-9)} |",
    ]) + "\n"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    started = time.monotonic()
    code = code_version()
    before = uptime()
    log(f"load: {before}")
    LOG_DIR.mkdir(exist_ok=True)
    with Processes(LOG_DIR) as procs, tempfile.TemporaryDirectory(prefix="lisa-ui-bench-") as work:
        base, token, stub = start_servers(procs, Path(work) / "data")
        default_model(base, token, STREAM_MODEL)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            sign_in(page, base, token)
            usable = measure_usable(page, base, args.runs)
            tokens = measure_tokens(page, base, stub, args.runs)
            turns = measure_turns(page, base, token, args.runs, args.turns)
            browser.close()
    after = uptime()
    section = render(args, usable, tokens, turns, (before, after), time.monotonic() - started, code)
    print(section)
    if not args.no_write:
        write_doc(section)
    print(json.dumps({"usable": usable, "turns": turns}), file=sys.stderr)


if __name__ == "__main__":
    main()
