"""How one ``queuer web`` server runs: its tokens, its mode and its page sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebSettings:
    read_only: bool = False
    show_encrypted: bool = False
    """Show decrypted arguments and results (needs the key in QUEUER_ENCRYPTION_KEY too)."""
    token: str | None = None
    """The operator's token (QUEUER_WEB_TOKEN): every page and every action."""
    read_token: str | None = None
    """A reader's token (QUEUER_WEB_READ_TOKEN): every page, no action."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers whose X-Forwarded-For/-Proto/-Host are believed (addresses or networks)."""
    public_origin: str | None = None
    """The origin browsers see behind a proxy (https://queue.example.com): forms may come from it."""
    refresh_seconds: float = 3.0
    page_size: int = 50
    bulk_limit: int = 1000
    """The most jobs one confirmed bulk action touches."""
