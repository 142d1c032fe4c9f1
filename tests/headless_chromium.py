"""Driving headless Chromium through the DevTools protocol over a pipe (test helper).

``chromium --remote-debugging-pipe`` reads protocol commands from its file descriptor 3 and
writes replies and events to descriptor 4, each message a JSON object ended by a NUL byte:
no WebSocket client and no network port are needed. :class:`Browser` starts Chromium with
every network request sent to a dead proxy, attaches to its page and offers
:meth:`Browser.call` (one command, its result) and :meth:`Browser.wait_event`; the page is
also put offline (``Network.emulateNetworkConditions``) and every request it makes is
recorded in :attr:`Browser.requests`.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "find_chromium"]


def find_chromium() -> str | None:
    """The Chromium executable on the PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A headless Chromium page driven through ``--remote-debugging-pipe``.

    Parameters
    ----------
    profile : Path
        An empty directory for the browser's profile.
    timeout : float
        Seconds any one command or wait may take before :class:`TimeoutError`.
    width, height : int
        The window size in CSS pixels.
    """

    def __init__(self, profile: Path, timeout: float = 60.0, width: int = 1280,
                 height: int = 900) -> None:
        chromium = find_chromium()
        if chromium is None:
            raise FileNotFoundError("no chromium on the PATH")
        self.timeout = timeout
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # the pipe's ends become Chromium's descriptors 3 and 4 through bash's redirections
        # (the numbers os.pipe gave are passed; 3 and 4 may be other files of this process)
        launcher = 'fd_in=$1; fd_out=$2; shift 2; exec "$@" 3<&"$fd_in" 4>&"$fd_out"'
        self._process = subprocess.Popen(
            ["bash", "-c", launcher, "chromium-pipe", str(commands_read), str(replies_write),
             chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
             "--proxy-bypass-list=<-loopback>", f"--window-size={width},{height}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(commands_read, replies_write), start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.session: str | None = None
        #: Every URL the page requested (``Network.requestWillBeSent``).
        self.requests: list[str] = []
        #: The page's uncaught JavaScript exceptions (``Runtime.exceptionThrown``).
        self.exceptions: list[dict[str, Any]] = []
        try:
            targets = self.call("Target.getTargets", session=False)["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                     flatten=True, session=False)["sessionId"]
            for domain in ("Page", "Runtime", "Network"):
                self.call(f"{domain}.enable")
            self.call("Network.emulateNetworkConditions", offline=True, latency=0,
                      downloadThroughput=-1, uploadThroughput=-1)
        except BaseException:
            self.close()
            raise

    # --- the protocol ----------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from chromium in time")
            ready, _, _ = select.select([self._replies], [], [], 0.2)
            if ready:
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise ConnectionError(f"chromium ended (status {self._process.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _note(self, message: dict[str, Any]) -> None:
        if message.get("method") == "Network.requestWillBeSent":
            self.requests.append(message["params"]["request"]["url"])
        elif message.get("method") == "Runtime.exceptionThrown":
            self.exceptions.append(message["params"]["exceptionDetails"])
        self._events.append(message)

    def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        """Send one command to the page (or, ``session=False``, to the browser); its result.

        Raises
        ------
        RuntimeError
            If Chromium answers with an error.
        """
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self.session is not None:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._note(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        """Wait for (or take an already received) event of the page named ``method``."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(i)
            self._note(self._read_message(deadline))

    # --- conveniences -------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serializable).

        Raises
        ------
        RuntimeError
            If the expression throws.
        """
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        """A real mouse event at page coordinates (``mouseMoved``, ``mousePressed``...)."""
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def close(self) -> None:
        """End Chromium: ``Browser.close``, then SIGTERM and SIGKILL to its process group
        (Chromium's helpers too) if it is still there; never raises."""
        if self._process.poll() is None:
            try:
                self.timeout = min(self.timeout, 10.0)
                self.call("Browser.close", session=False)
            except (OSError, RuntimeError, TimeoutError, ConnectionError, ValueError):
                pass
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self._process.poll() is None:
                try:
                    os.killpg(self._process.pid, sig)
                except OSError:
                    pass
            try:
                self._process.wait(15)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
