"""The README's example delivery settings validate, and are docs/examples/delivery.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lqs.domain.delivery import parse_delivery_settings, provider_for

ROOT = Path(__file__).parents[2]


def _readme_delivery_block() -> str:
    """The ```yaml block that follows the README's "with a `delivery.yaml` such as"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"with a `delivery\.yaml` such as.*?```yaml\n(.*?)```", readme, re.S)
    assert found is not None, "README.md has no delivery.yaml example"
    return found.group(1)


def test_the_readme_example_validates_and_configures_every_channel() -> None:
    settings = parse_delivery_settings(yaml.safe_load(_readme_delivery_block()))

    assert [provider_for(c, settings) for c in ("email", "sms", "push", "webhook")] == [
        "resend", "twilio", "webpush", "webhook"
    ]  # fmt: skip
    assert provider_for("email", settings, primary_failing=True) == "sendgrid"


def test_the_readme_example_is_the_shipped_file() -> None:
    shipped = (ROOT / "docs" / "examples" / "delivery.yaml").read_text(encoding="utf-8")

    assert _readme_delivery_block() == shipped


def test_the_readme_stores_the_shipped_file() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert "lqs clients set-delivery acme docs/examples/delivery.yaml" in readme
