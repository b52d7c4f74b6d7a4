"""The chat turn's one call (``PromptContexts.prepare``) with stand-ins for its parts: where documents, a summary
and the question go in the messages, and what the turn streams and keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.auth.principal import Principal
from backend.chat.compaction import SUMMARY_PREFIX, Compacted
from backend.chat.context_schemas import ContextNotice
from backend.chat.prompt_context import QUESTION_SEPARATOR, PromptContexts
from backend.registry.schemas import Hosting, ModelRoute, ModelStatus, ModelType

ALICE = Principal("alice", frozenset(), is_admin=False)
SESSION = {"id": "ses_1", "context_documents": 1}
ROUTE = ModelRoute("m", ModelType.textgen, Hosting.internal, None, "http://x/v1", None, None, (), True,
                   ModelStatus.in_service, 0, context_window=1000)  # fmt: skip
NOTICE = ContextNotice(document_id="cdoc_1", name="big.md", kept_tokens=10, total_tokens=99, omitted=False,
                       message="big.md: only the first 10 of its 99 tokens (10%) were used")  # fmt: skip


class Documents:
    def __init__(self, text: str, notices: list[ContextNotice]) -> None:
        self.text, self.notices, self.budgets = text, notices, []  # type: ignore[var-annotated]

    async def context_for(self, session_id: str, principal: Principal, route: Any, budget: int) -> Any:
        self.budgets.append(budget)
        return self.text, self.notices


class Compactor:
    def __init__(self, result: Compacted) -> None:
        self.result, self.calls = result, []  # type: ignore[var-annotated]

    async def compact(self, principal: Principal, route: Any, session_id: str,
                      path: Sequence[Mapping[Any, Any]], fixed: int) -> Compacted:  # fmt: skip
        self.calls.append((list(path), fixed))
        return self.result


class Routes:
    async def get(self, model_id: str) -> ModelRoute | None:
        return ROUTE if model_id == "m" else None


def row(i: int, role: str) -> dict[str, Any]:
    return {"id": f"m{i}", "role": role, "content": f"t{i}", "metadata": {}, "status": "complete"}


async def test_documents_go_with_the_question_and_a_summary_heads_the_history() -> None:
    earlier = [row(0, "user"), row(1, "assistant"), row(2, "user"), row(3, "assistant")]
    made = {"id": "msg_s", "metadata": {"covers": ["m0", "m1"], "tokens_before": 900, "tokens_after": 400}}
    compactor = Compactor(Compacted(kept=earlier[2:], summary="older things", summary_message=made))
    documents = Documents('<document name="big.md">...</document>', [NOTICE])
    prompt = PromptContexts(documents, compactor, Routes(), 8192)  # type: ignore[arg-type]
    ctx = await prompt.prepare(ALICE, SESSION, "m", "Be brief.", earlier, "What now?", 20)
    assert documents.budgets == [400]  # 40% of the model's window
    assert ctx.messages[0] == {"role": "system", "content": "Be brief."}
    assert ctx.messages[1]["content"] == SUMMARY_PREFIX + "older things\n\n---\n\nt2"
    assert ctx.messages[2] == {"role": "assistant", "content": "t3"}
    assert ctx.messages[-1] == {"role": "user", "content": documents.text + QUESTION_SEPARATOR + "What now?"}
    assert ctx.metadata["context_documents"][0]["name"] == "big.md"
    assert ctx.metadata["compaction"] == {"summary_id": "msg_s", "covers": 2, "tokens_before": 900,
                                         "tokens_after": 400}  # fmt: skip
    assert [name for name, _ in ctx.events] == ["context", "compaction"]
    [(path, fixed)] = compactor.calls
    assert [r["id"] for r in path] == ["m0", "m1", "m2", "m3"] and fixed > 0


async def test_without_documents_or_compaction_the_prompt_is_the_plain_one() -> None:
    earlier = [row(0, "user"), row(1, "assistant")]
    prompt = PromptContexts(Documents("", []), Compactor(Compacted(kept=earlier)), Routes(), 8192)  # type: ignore[arg-type]
    ctx = await prompt.prepare(ALICE, SESSION, "m", None, earlier, "Q", 20)
    assert ctx.messages == [{"role": "user", "content": "t0"}, {"role": "assistant", "content": "t1"},
                            {"role": "user", "content": "Q"}]  # fmt: skip
    assert ctx.metadata == {} and ctx.events == []
    # a session without documents is not looked into
    unlooked = Documents("<document>never</document>", [NOTICE])
    plain = PromptContexts(unlooked, Compactor(Compacted(kept=earlier)), Routes(), 8192)  # type: ignore[arg-type]
    ctx = await plain.prepare(ALICE, {"id": "ses_1", "context_documents": 0}, "m", None, earlier, "Q", 20)
    assert unlooked.budgets == [] and ctx.messages[-1] == {"role": "user", "content": "Q"}
    # a summary with nothing kept after it joins the question rather than making a user turn of its own
    alone = PromptContexts(Documents("", []), Compactor(Compacted(kept=[], summary="S")), Routes(), 8192)  # type: ignore[arg-type]
    ctx = await alone.prepare(ALICE, SESSION, "m", None, earlier, "Q", 20)
    assert ctx.messages == [{"role": "user", "content": SUMMARY_PREFIX + "S" + QUESTION_SEPARATOR + "Q"}]
    # an unknown model: no compaction (the gateway answers 404), documents within the default window
    unknown = PromptContexts(Documents("", []), Compactor(Compacted(kept=[])), Routes(), 8192)  # type: ignore[arg-type]
    ctx = await unknown.prepare(ALICE, SESSION, "nope", None, earlier, "Q", 1)
    assert ctx.messages == [{"role": "assistant", "content": "t1"}, {"role": "user", "content": "Q"}]
