"""Create development secrets in an untracked env file, once; never overwrite existing ones
(a file from before a secret was needed gets that one added)."""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path


def main() -> int:
    """Write ``.env.dev`` (mode 0600) with fresh secrets unless it exists; to one that exists,
    add only the secrets it lacks."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".env.dev")
    values = {
        "PAYMENTS_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "MARKETPLACE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "GATEWAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
        # Signs the buyers' live status tokens (config.yaml's status block); the marketplace
        # holds it too.
        "STATUS_TOKEN_SECRET": secrets.token_urlsafe(48),
    }
    if path.exists():
        present = path.read_text()
        missing = {k: v for k, v in values.items() if f"export {k}=" not in present}
        if missing:
            with path.open("a") as out:
                for name, value in missing.items():
                    out.write(f"export {name}={value}\n")
            print(f"added {', '.join(missing)} to {path}", file=sys.stderr)
        return 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Development secrets for make run; not for production. Untracked by git.\n")
        for name, value in values.items():
            out.write(f"export {name}={value}\n")
    print(f"created development secrets in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
