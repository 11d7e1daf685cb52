"""`wren serve` on a free loopback port, for the tools that drive it
(check-openai.py, check-lm-eval.py, bench-serve.py, soak-serve.py)."""
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(wren, model, args=(), stderr=subprocess.DEVNULL, timeout=120):
    """Starts the server and waits for /health to say 200. Returns (process, base URL, port)."""
    port = free_port()
    proc = subprocess.Popen([wren, "serve", "-m", model, "--port", str(port)] + list(args), stderr=stderr, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base, port
        except Exception:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"FAIL: wren serve did not become ready within {timeout} s")
