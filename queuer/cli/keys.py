"""Encryption keys: make one, and re-encrypt every job after a rotation."""

from __future__ import annotations

import os

import click

from queuer.cli.base import CliState, main, pass_state


@main.command()
def keygen() -> None:
    """Print a new random encryption key for QUEUER_ENCRYPTION_KEY."""
    from queuer.payload.encryption import generate_key

    click.echo(generate_key())


@main.command()
@click.option("--batch-size", default=500, show_default=True)
@pass_state
def reencrypt(state: CliState, batch_size: int) -> None:
    """After a key rotation: re-encrypt every job under the newest key of QUEUER_ENCRYPTION_KEY."""
    from queuer.database import admin
    from queuer.errors import EncryptionError
    from queuer.payload.encryption import Keyring

    try:
        keyring = Keyring.parse(os.environ.get("QUEUER_ENCRYPTION_KEY"))
    except EncryptionError as exc:
        raise click.ClickException(str(exc)) from None
    if keyring is None:
        raise click.ClickException("set QUEUER_ENCRYPTION_KEY: the newest key first, then the old ones")
    with state.connection() as conn:
        try:
            total = admin.reencrypt(conn, state.config().schema, keyring, batch_size,
                                    progress=lambda n: click.echo(f"\rre-encrypted {n}", nl=False, err=True))
        except EncryptionError as exc:
            raise click.ClickException(f"{exc}; nothing after this row was changed") from None
    click.echo(f"\nre-encrypted {total} job(s) under key {keyring.current_id.hex()}")
