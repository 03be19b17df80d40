"""An EMR's MLLP receiver played by python-hl7 (``hl7.mllp``, asyncio), which nobody here wrote.

It parses every message with python-hl7, runs the test's checks on it, records it by MSH-10, and answers
with python-hl7's own ``create_ack``: AA, or AE/AR with a reason in MSA-3 when the test's ``answer`` says so.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hl7
import hl7.mllp


@dataclass
class Received:
    message_id: str
    raw: str
    parsed: Any
    connection: int


Answer = Callable[["Received"], tuple[str, str]]


def accept_all(_: Received) -> tuple[str, str]:
    return "AA", ""


@dataclass
class Hl7Peer:
    answer: Answer = accept_all
    encoding: str = "utf-8"
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    tls: Any = None
    _loop: asyncio.AbstractEventLoop | None = None
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def ids(self) -> list[str]:
        return [r.message_id for r in self.received]

    async def _handle(self, reader: Any, writer: Any) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while not reader.at_eof():
                try:
                    message = await reader.readmessage()
                except asyncio.IncompleteReadError:
                    break
                raw = str(message)
                msh = message.segment("MSH")
                item = Received(str(msh(10)), raw, message, connection)
                try:
                    code, text = self.answer(item)
                except Exception as exc:  # a failed check becomes an AE the test can see
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    code, text = "AE", str(exc)
                self.received.append(item)
                if self.delay:
                    await asyncio.sleep(self.delay)
                ack = message.create_ack(ack_code=code)
                if text:
                    ack.segment("MSA").assign_field(text.replace("|", " ").replace("^", " "), 3)
                writer.writemessage(ack)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def start(self) -> Hl7Peer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                self._server = await hl7.mllp.start_hl7_server(
                    self._handle,
                    host="127.0.0.1",
                    port=self.port,
                    encoding=self.encoding,
                    ssl=self.tls,
                    limit=16 * 1024 * 1024,  # ORU^R01 with a PDF is larger than the 64 KiB default
                )
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(main())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="hl7-peer", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("python-hl7 MLLP server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            self._server.close()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len({r.message_id for r in self.received}) >= count:
                return self.received
            time.sleep(0.02)
        raise AssertionError(f"peer saw {len(self.received)} messages, wanted {count}; errors {self.errors}")


def check_oru(item: Received) -> None:
    """What an EMR interface checks on an ORU^R01: type, version, and the segments it needs."""
    message = item.parsed
    msh = message.segment("MSH")
    assert str(msh(9)) == "ORU^R01^ORU_R01", str(msh(9))
    assert str(msh(12)) == "2.5.1"
    assert message.segment("PID") is not None
    obr = message.segment("OBR")
    assert str(obr(25)) in ("P", "F", "C"), str(obr(25))
    obx = [seg for seg in message if str(seg[0]) == "OBX"]
    assert obx, "no OBX"
    for seg in obx:
        assert str(seg(11)) == str(obr(25)), "OBX-11 must follow OBR-25"
