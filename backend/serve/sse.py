"""An incremental parser of server-sent events, fed the bytes of an upstream stream as they arrive.

The WHATWG ``text/event-stream`` rules, reduced to what OpenAI-compatible streams use: lines end in ``\\n``,
``\\r\\n`` or ``\\r``; an empty line ends an event; ``data:`` lines (one leading space dropped) are joined with
``\\n``; comments (``:``) and other fields are kept in the event's raw bytes but carry no data. A read may end
anywhere (in a JSON object, between ``\\r`` and ``\\n``): only complete events come out, each with its exact raw
bytes, so a relay that changes nothing forwards the upstream's bytes unchanged.

Hand-written on purpose: the SSE clients on PyPI (``httpx-sse``, ``aiohttp-sse-client``) own the connection
and yield decoded strings; the gateway needs the raw bytes of each event next to its data, on its own session.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class SseEvent:
    raw: bytes  # every byte of the event as received, its terminating empty line included
    data: bytes | None  # the joined ``data:`` lines; None for an event without any (a comment, a keep-alive)


class SseParser:
    __slots__ = ("_buffer", "_data", "_scan")

    def __init__(self) -> None:
        self._buffer = b""  # bytes of the event in progress (complete lines) and of its unfinished line
        self._scan = 0  # where the unfinished line starts in ``_buffer``
        self._data: list[bytes] = []  # data lines of the event in progress

    @property
    def pending(self) -> int:
        """Bytes held for an event not yet complete."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that ``chunk`` completes (possibly none)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SseEvent] = []
        start = 0  # where the event in progress starts
        pos = self._scan
        size = len(buffer)
        while pos < size:
            lf = buffer.find(b"\n", pos)
            cr = buffer.find(b"\r", pos, lf if lf != -1 else size)
            if cr != -1:
                if cr + 1 == size:
                    break  # a "\r" last: its "\n" may be in the next read
                end, next_line = cr, cr + 2 if buffer[cr + 1] == 0x0A else cr + 1
            elif lf != -1:
                end, next_line = lf, lf + 1
            else:
                break
            if end == pos:  # an empty line: the event is complete
                events.append(SseEvent(buffer[start:next_line], b"\n".join(self._data) if self._data else None))
                self._data = []
                start = next_line
            elif buffer.startswith(b"data", pos):
                line = buffer[pos:end]
                if line == b"data":
                    self._data.append(b"")
                elif line[4] == 0x3A:  # "data:"
                    self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            pos = next_line
        self._buffer = buffer[start:]
        self._scan = pos - start
        return events

    def close(self) -> SseEvent | None:
        """At the end of the stream: what is left of an event the upstream never terminated, if anything."""
        rest, line, data = self._buffer, self._buffer[self._scan :].rstrip(b"\r\n"), self._data
        self._buffer, self._scan, self._data = b"", 0, []
        if not rest.strip():
            return None
        if line == b"data":
            data = [*data, b""]
        elif line.startswith(b"data:"):
            data = [*data, line[6:] if line[5:6] == b" " else line[5:]]
        return SseEvent(rest, b"\n".join(data) if data else None)
