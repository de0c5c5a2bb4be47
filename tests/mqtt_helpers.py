"""A real MQTT broker (Debian's mosquitto) on 127.0.0.1 for the tests, and a subscriber's log."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from helpers_proc import wait_for
from videoclf.devtools.testing import free_port, listening


class Broker:
    def __init__(self, tmp: Path, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root"]
        if users:
            pw = tmp / "passwd"
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", *([] if pw.exists() else ["-c"]), str(pw), user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: listening(self.port), 10, "mosquitto to start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def subscribe(self, out: Path, user: str | None = None, password: str | None = None) -> subprocess.Popen:
        auth = ["-u", user, "-P", password] if user else []
        proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", "#", "-v", "-q", "1",
                                 *auth], stdout=out.open("w"), stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # subscribed before anything is published
        return proc


def messages(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        topic, _, payload = line.partition(" ")
        out.append((topic, payload))
    return out
