"""A lean Chat Completions upstream for the concurrency benchmark: plain asyncio, HTTP/1.1 keep-alive.

The tests' scripted upstream (tests/upstream.py, Starlette + uvicorn) spends about 4 ms of CPU per
streamed answer; at 500 answers at once that alone would exceed the target. This one streams the
same chunks (checked once against ``CreateChatCompletionStreamResponse`` when the tests package is
importable) for a fraction of that. Every answer: wait ``first_delay`` seconds, then ``deltas``
content deltas, a finish chunk, a usage chunk and ``data: [DONE]``.

    python -m benchmarks.lean_upstream --first-delay 1 --deltas 5   # prints its base URL; stops when stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


def chunks(model: str, deltas: int) -> list[dict]:
    base = {"id": "chatcmpl-lean", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": f"word{i} "}) for i in range(deltas)]
    out.append(chunk({}, "stop"))
    out.append({**base, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": deltas,
                                                  "total_tokens": 10 + deltas}})
    return out


def check_against_schema(sample: list[dict]) -> None:
    try:
        from tests.upstream import problems
    except ImportError:
        return
    found = [p for c in sample for p in problems("CreateChatCompletionStreamResponse", c)]
    if found:
        raise SystemExit("lean upstream chunks violate the schema:\n" + "\n".join(found))


def encode(data: str) -> bytes:
    payload = data.encode()
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Lean:
    def __init__(self, first_delay: float, deltas: int):
        self.first_delay = first_delay
        self.body = [encode(f"data: {json.dumps(c)}\n\n") for c in chunks("lean", deltas)]
        self.body.append(encode("data: [DONE]\n\n") + b"0\r\n\r\n")
        check_against_schema(chunks("lean", deltas))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n")
                await asyncio.sleep(self.first_delay)
                writer.write(b"".join(self.body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping
        finally:
            writer.close()


async def serve(first_delay: float, deltas: int) -> None:
    lean = Lean(first_delay, deltas)
    server = await asyncio.start_server(lean.handle, "127.0.0.1", 0, backlog=2048)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lean_upstream")
    parser.add_argument("--first-delay", type=float, default=1.0)
    parser.add_argument("--deltas", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.first_delay, args.deltas))


if __name__ == "__main__":
    main()
