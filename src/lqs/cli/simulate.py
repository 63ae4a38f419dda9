"""``lqs simulate``: serve the provider simulator (Resend, SendGrid, Twilio, web push, sink).

``--client SLUG`` registers the simulator's delivery callbacks for a client, as ``lqs demo``
does for its clients (:func:`client_callbacks`): Resend's signed with the client's webhook
secret, SendGrid's with a key made now whose public half is stored in the client's settings
(they hold no private key to sign with), Twilio's going to each message's StatusCallback.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from lqs.cli._common import console, fail, in_transaction, settings
from lqs.db.clients import get_client, update_client_settings
from lqs.domain.delivery import (
    DeliverySettings,
    ProviderSettings,
    http_url_problem,
    parse_delivery_settings,
)

if TYPE_CHECKING:
    from uuid import UUID

    from lqs.simulator import SimulatorConfig


def sendgrid_key_pair() -> tuple[str, str]:
    """A fresh P-256 key pair: the PEM private key (the simulator signs) and the public key
    as SendGrid shows it (base64 DER), which the client's settings hold."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    return private, public


def simulated(provider: ProviderSettings) -> bool:
    """Whether the provider's settings send somewhere other than the real provider's API
    (its ``base_url`` changed from the default): only then can a simulator see its messages."""
    base_url = getattr(provider, "base_url", None)
    return base_url is not None and base_url != type(provider).model_fields["base_url"].default


@dataclass
class ClientCallbacks:
    """How the simulator calls one client's API back (``callbacks.webhooks`` entries), one
    line per provider saying where its events go, and one per provider whose cannot."""

    webhooks: list[dict[str, Any]] = field(default_factory=list)
    wired: list[str] = field(default_factory=list)
    unwired: list[str] = field(default_factory=list)


def client_callbacks(
    client_id: UUID,
    delivery: DeliverySettings,
    api_base: str,
    *,
    sendgrid_private_key: str | None,
) -> ClientCallbacks:
    """The simulator's callbacks to the API at ``api_base`` for a client with these delivery
    settings: to ``/webhooks/{provider}/{client_id}``, Resend's signed with the settings'
    ``webhook_secret``, SendGrid's with ``sendgrid_private_key`` (the private half of the
    settings' ``webhook_public_key``). Twilio needs no registration: the simulator calls each
    message's StatusCallback (``status_callback_url``)."""
    found = ClientCallbacks()

    def hook(provider: str) -> str:
        return f"{api_base.rstrip('/')}/webhooks/{provider}/{client_id}"

    resend, sendgrid, twilio = delivery.resend, delivery.sendgrid, delivery.twilio
    for name, provider in (("resend", resend), ("sendgrid", sendgrid), ("twilio", twilio)):
        if provider is not None and not simulated(provider):
            base_url = getattr(provider, "base_url", "")
            found.unwired.append(f"{name} sends to {base_url}, not to a simulator")
    if resend is not None and simulated(resend):
        if resend.webhook_secret is None:
            found.unwired.append(
                "resend: its delivery settings have no resend.webhook_secret (whsec_...):"
                " no email events"
            )
        else:
            found.webhooks.append(
                {
                    "provider": "resend",
                    "api_key": resend.api_key.get_secret_value(),
                    "url": hook("resend"),
                    "secret": resend.webhook_secret.get_secret_value(),
                }
            )
            found.wired.append(f"resend events to {hook('resend')}")
    if sendgrid is not None and simulated(sendgrid):
        if sendgrid_private_key is None:
            found.unwired.append("sendgrid: no private key to sign its events with")
        else:
            found.webhooks.append(
                {
                    "provider": "sendgrid",
                    "api_key": sendgrid.api_key.get_secret_value(),
                    "url": hook("sendgrid"),
                    "private_key": sendgrid_private_key,
                }
            )
            found.wired.append(f"sendgrid events to {hook('sendgrid')}")
    if twilio is not None and simulated(twilio):
        if twilio.status_callback_url is None:
            found.unwired.append(
                "twilio: its delivery settings have no twilio.status_callback_url: no SMS"
                f" events (set it to {hook('twilio')})"
            )
        else:
            found.wired.append(f"twilio events to {twilio.status_callback_url}")
    return found


def _wire_clients(config: SimulatorConfig, slugs: list[str], api_base: str) -> SimulatorConfig:
    """``config`` with the callbacks of each client added; says what was wired, and what
    could not be, one line each. A SendGrid client's ``webhook_public_key`` becomes the
    public half of the key made for this simulator (stored before it starts)."""
    from lqs.simulator import WebhookRegistration

    problem = http_url_problem(api_base)
    if problem is not None:
        fail(f"--api {api_base!r} {problem}")

    async def wire(conn: psycopg.AsyncConnection) -> list[tuple[str, ClientCallbacks]]:
        wired = []
        for slug in dict.fromkeys(slugs):
            client = await get_client(conn, slug)
            raw = dict(client.settings.get("delivery") or {})
            delivery = parse_delivery_settings(raw)
            private_key = None
            if delivery.sendgrid is not None and simulated(delivery.sendgrid):
                private_key, public_key = sendgrid_key_pair()
                raw["sendgrid"] = {**raw["sendgrid"], "webhook_public_key": public_key}
                await update_client_settings(conn, client.id, {"delivery": raw})
            callbacks = client_callbacks(
                client.id, delivery, api_base, sendgrid_private_key=private_key
            )
            if private_key is not None:
                callbacks.wired.append(
                    "sendgrid signs with a key made now: its public half is stored as the"
                    " client's sendgrid.webhook_public_key"
                )
            if not raw:
                callbacks.unwired.append("no delivery settings (lqs clients set-delivery)")
            wired.append((slug, callbacks))
        return wired

    registrations = list(config.callbacks.webhooks)
    owners: dict[tuple[str, str], str] = {}
    for slug, callbacks in in_transaction(wire):
        for line in callbacks.wired:
            console().print(f"{slug}: {line}", highlight=False, soft_wrap=True)
        for line in callbacks.unwired:
            typer.echo(f"warning: {slug}: {line}", err=True)
        for webhook in callbacks.webhooks:
            # The simulator finds a webhook by (provider, API key): a key two clients share
            # sends its events to the last one's URL only.
            key = (webhook["provider"], webhook["api_key"])
            if key in owners:
                typer.echo(
                    f"warning: {slug}: its {key[0]} API key is also {owners[key]}'s: the "
                    f"simulator sends those events to {slug} only",
                    err=True,
                )
            owners[key] = slug
            registrations.append(WebhookRegistration.model_validate(webhook))
    callbacks_config = config.callbacks.model_copy(update={"webhooks": registrations})
    return config.model_copy(update={"callbacks": callbacks_config})


def simulate(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8025,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="JSON or YAML simulator configuration (keys, refused recipients, faults)",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    clients: Annotated[
        list[str] | None,
        typer.Option(
            "--client",
            metavar="SLUG",
            help="Send this client's delivery events to the API (repeatable)",
        ),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(metavar="URL", help="The API the events go to (default: LQS_PUBLIC_BASE_URL)"),
    ] = None,
) -> None:
    """Serve the provider simulator until interrupted; point provider base URLs at it."""
    # Imported here: other commands need not load the simulator.
    from lqs.simulator import SimulatorConfig, create_app, load_config

    config = SimulatorConfig()
    if config_file is not None:
        try:
            config = load_config(config_file)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            fail(f"{config_file}: {where}: {first['msg']}")
        except (OSError, ValueError) as exc:
            fail(f"{config_file}: {exc}")
    if clients:
        config = _wire_clients(config, clients, api or settings().public_base_url)
    elif api is not None:
        fail("--api is for --client: the API the client's delivery events go to")
    from lqs.cli.run import serve_app

    serve_app(
        create_app(config),
        host,
        port,
        lambda where: f"Provider simulator on {where} (inspect at /_sim/messages)",
        graceful_seconds=2,
    )
