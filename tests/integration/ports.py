"""Free ports for test servers and for tasks' static host ports.

Ports come from below the kernel's ephemeral range, so an outgoing client
connection made later in the run can never take a port a test has chosen
(a static hostPort inside that range can collide with any loopback client).
A port is only returned when both TCP and UDP can bind it on every address."""
import random
import socket

_LOW = 20000


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def free_port():
    high = max(_ephemeral_low(), _LOW + 1000)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(_LOW, high)
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port in [{_LOW}, {high})")
