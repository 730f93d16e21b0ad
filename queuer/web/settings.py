"""How one ``queuer web`` server runs: its tokens, its mode and its page sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebSettings:
    read_only: bool = False
    #: show decrypted arguments and results (needs the key in QUEUER_ENCRYPTION_KEY too)
    show_encrypted: bool = False
    #: the operator's token (QUEUER_WEB_TOKEN): every page and every action
    token: str | None = None
    #: a reader's token (QUEUER_WEB_READ_TOKEN): every page, no action
    read_token: str | None = None
    #: peers whose X-Forwarded-For/-Proto/-Host are believed (addresses or networks)
    trusted_proxies: tuple[str, ...] = ()
    #: the origin browsers see behind a proxy (https://queue.example.com): forms may come from it
    public_origin: str | None = None
    refresh_seconds: float = 3.0
    page_size: int = 50
    #: the most jobs one confirmed bulk action touches
    bulk_limit: int = 1000
