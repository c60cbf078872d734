"""Create development secrets in an untracked env file, once; never overwrite existing ones."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path


def main() -> int:
    """Write ``.env.dev`` (mode 0600) with fresh secrets unless it already exists."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".env.dev")
    if path.exists():
        return 0
    values = {
        "PAYMENTS_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "MARKETPLACE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "GATEWAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Development secrets for make run; not for production. Untracked by git.\n")
        for name, value in values.items():
            out.write(f"export {name}={value}\n")
    print(f"created development secrets in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
