"""Container health check: exit 0 when the service answers `GET /healthz`, 1 otherwise.

The images' HEALTHCHECK runs it (the slim base has no curl). Host and port come from the
same `XMODAL_*` settings the service reads, so a changed port cannot leave a working
container marked unhealthy.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.config import Settings

PATH = "/healthz"
TIMEOUT_S = 3.0
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # listening everywhere: ask over loopback


def health_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in WILDCARD_HOSTS else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}{PATH}"


def main() -> int:
    try:
        with urllib.request.urlopen(health_url(Settings()), timeout=TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
