"""What the smoke scripts share: failing with one line that names the script, timed steps,
polling with a deadline, and a fresh user to act as.

    from checks import Checks
    check, step, wait_for = Checks("cli smoke").tools()
"""

import time
import uuid
from urllib.parse import urlparse


class Checks:
    def __init__(self, name, deadline=300.0, width=52):
        self.name = name
        self.deadline = deadline
        self.width = width

    def tools(self):
        return self.check, self.step, self.wait_for

    def check(self, condition, message):
        """Ends the script with `<name>: message` unless `condition` holds."""
        if not condition:
            raise SystemExit(f"{self.name}: {message}")

    def step(self, label, action):
        """Runs `action`, printing its label and how long it took; returns its result."""
        began = time.monotonic()
        result = action()
        print(f"  {label:<{self.width}} {time.monotonic() - began:7.2f} s", flush=True)
        return result

    def wait_for(self, what, probe, interval=0.5):
        """Polls `probe` until it returns something truthy, within the deadline."""
        until = time.monotonic() + self.deadline
        last = None
        while time.monotonic() < until:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise SystemExit(f"{self.name}: {what} not reached in {self.deadline:.0f} s (last: {last!r})")


def fresh_user(admin_url, superadmin_password, user_type, prefix):
    """A new user of `user_type` (its email starts with `prefix`), logged in: its client. Needs the
    SDK (`python/`) on the path."""
    from duma.client import Client

    url = urlparse(admin_url)
    admin = Client(url.hostname, url.port, timeout=60)
    admin.login("superadmin@rafiki", superadmin_password)
    email, password = f"{prefix}-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex
    admin.create_user(email, password, user_type)
    client = Client(url.hostname, url.port, timeout=60)
    client.login(email, password)
    return client
