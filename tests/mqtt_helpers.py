"""A real MQTT broker (Debian's mosquitto) on 127.0.0.1 for the tests, and a subscriber's log.

``Broker(tmp, users=..., tls=True)`` listens with TLS only, with a server certificate for
127.0.0.1 signed by a throwaway CA made with the ``openssl`` command line (``broker.ca_file``)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from helpers_proc import wait_for
from videoclf.devtools.testing import free_port, listening

HAVE_OPENSSL = shutil.which("openssl") is not None


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key): a CA and a server certificate for IP 127.0.0.1, valid a day."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for cmd in (["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=videoclf test CA"],
                ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
                ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "1",
                 "-extfile", ext]):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, crt, key


class Broker:
    def __init__(self, tmp: Path, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.ca_file: Path | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root"]
        if tls:
            self.ca_file, crt, key = make_ca_and_server_cert(tmp / "tls")
            lines += [f"cafile {self.ca_file}", f"certfile {crt}", f"keyfile {key}"]
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
        tls = ["--cafile", str(self.ca_file)] if self.ca_file else []
        proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", "#", "-v", "-q", "1",
                                 *auth, *tls], stdout=out.open("w"), stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # subscribed before anything is published
        return proc


def messages(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        topic, _, payload = line.partition(" ")
        out.append((topic, payload))
    return out
