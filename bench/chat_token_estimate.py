"""How far LISA's token estimate (backend/serve/budget.py, ~4 characters a token) is from a real tokenizer.

Compaction and documents in context decide what fits a model's context window by counting tokens. This measures
the estimate against llama-cpp-python's own tokenizer (``POST /extras/tokenize/count``; vLLM and llama.cpp's C++
server answer ``POST /tokenize``) on the kinds of text a chat carries, and what asking the upstream costs.

Run: ``python -m bench.chat_token_estimate --url http://127.0.0.1:PORT`` against a llama-cpp-python server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import httpx

from backend.chat.tokens import count as counted
from backend.chat.tokens import count_messages
from backend.serve.budget import estimate_prompt_tokens
from ingestion.tokens import encoding

ROOT = Path(__file__).resolve().parents[1]
FRENCH = (
    "Le modèle résume les anciens échanges de la conversation lorsque la fenêtre de contexte approche de sa limite. "
    "Les documents joints à la session sont tronqués pour tenir dans la fenêtre, et l'utilisateur en est informé. "
)
GERMAN = (
    "Wenn sich die Unterhaltung der Grenze des Kontextfensters nähert, werden ältere Nachrichten zusammengefasst. "
    "Hochgeladene Dokumente werden gekürzt, damit sie hineinpassen, und der Benutzer erfährt, was entfernt wurde. "
)
CHINESE = (
    "当对话接近模型的上下文窗口时，较早的轮次会被压缩成摘要。会话中上传的文档会被截断以适应窗口，并告知用户删减了什么。"  # noqa: RUF001
)


def samples() -> dict[str, str]:
    return {
        "English prose (docs/*.md)": "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))[:40_000],
        "Python code (backend/serve)": "\n".join(
            p.read_text() for p in sorted((ROOT / "backend" / "serve").glob("*.py"))
        )[:40_000],
        "TOML (pyproject.toml x 4)": (ROOT / "pyproject.toml").read_text() * 4,
        "French prose": FRENCH * 40,
        "German prose": GERMAN * 40,
        "Chinese prose": CHINESE * 60,
    }


def count(client: httpx.Client, text: str) -> int:
    return int(client.post("/extras/tokenize/count", json={"input": text}).json()["count"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=120) as client:
        o200k = encoding("o200k_base")
        print("| text | characters | real tokens | chars/4 estimate | o200k_base | LISA's count (o200k x 1.2) |")
        print("|---|---|---|---|---|---|")
        for name, text in samples().items():
            real = count(client, text)
            estimate = estimate_prompt_tokens({"prompt": text})
            tiktoken_count = len(o200k.encode_ordinary(text))
            ours = counted(text)
            print(
                f"| {name} | {len(text):,} | {real:,} | {estimate:,} ({estimate / real:.2f}x) "
                f"| {tiktoken_count:,} ({tiktoken_count / real:.2f}x) | {ours:,} ({ours / real:.2f}x) |"
            )
        # A conversation: the estimate of the whole request against the prompt tokens the server reports.
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for i in range(12):
            messages.append({"role": "user", "content": f"Question {i}: " + FRENCH[: 80 + 10 * i]})
            messages.append({"role": "assistant", "content": f"Answer {i}: " + GERMAN[: 90 + 7 * i]})
        messages.append({"role": "user", "content": "And now?"})
        answer = client.post("/v1/chat/completions", json={"model": "x", "messages": messages, "max_tokens": 1})
        real = answer.json()["usage"]["prompt_tokens"]
        estimate = estimate_prompt_tokens({"messages": messages})
        ours = count_messages(messages)
        print(
            f"| a 26-message chat (prompt_tokens) | - | {real:,} | {estimate:,} ({estimate / real:.2f}x) | - "
            f"| {ours:,} ({ours / real:.2f}x) |"
        )
        # What asking the upstream costs, per call, for a 4,000-character text.
        text = samples()["English prose (docs/*.md)"][:4000]
        timings = []
        for _ in range(30):
            start = time.perf_counter()
            count(client, text)
            timings.append((time.perf_counter() - start) * 1000)
        local = []
        for _ in range(30):
            start = time.perf_counter()
            counted(text)
            local.append((time.perf_counter() - start) * 1000)
        print(
            f"\n/extras/tokenize/count of 4,000 characters: p50 {statistics.median(timings):.2f} ms, "
            f"max {max(timings):.2f} ms; LISA's count: p50 {statistics.median(local):.2f} ms"
        )


if __name__ == "__main__":
    main()
