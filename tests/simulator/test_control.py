"""``/_sim``: configuration (files and ``PUT``), inspection filters, reset, and ``lqs simulate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from lqs.cli.simulate import simulate
from lqs.simulator import SimulatorConfig, SimulatorControl, load_config
from tests.simulator.conftest import Configure
from tests.simulator.senders import send_resend, send_sendgrid, send_twilio

FAULTY = {
    "seed": 3,
    "resend": {
        "faults": {
            "error_rates": {"500": 0.25},
            "latency": {"distribution": "fixed", "seconds": 0.01},
        }
    },
    "sink": {"hooks": {"crm": {"status": 410}}},
}


def test_config_put_is_read_back(client: httpx.Client, sim: SimulatorControl) -> None:
    put = client.put("/_sim/config", json=FAULTY)
    got = client.get("/_sim/config")

    assert put.status_code == 200
    assert got.json() == put.json()
    assert got.json()["resend"]["faults"]["error_rates"] == {"500": 0.25}
    assert got.json()["sink"]["hooks"]["crm"]["status"] == 410


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"resend": {"faults": {"error_rates": {"500": 0.7}, "timeout_rate": 0.5}}},
            "fault rates add up to 1.200",
        ),
        ({"resend": {"api_key": "re_x"}}, "resend.api_key: Extra inputs are not permitted"),
        ({"twilio": {"faults": {"error_rates": {"200": 0.1}}}}, "200 is not a 4xx or 5xx status"),
        ({"push": {"faults": {"script": ["explode"]}}}, "'explode' is neither"),
        (
            {
                "sendgrid": {
                    "faults": {
                        "latency": {"distribution": "uniform", "min_seconds": 2, "max_seconds": 1}
                    }
                }
            },
            "min_seconds must not exceed max_seconds",
        ),
    ],
)
def test_invalid_config_is_422_naming_the_setting(
    client: httpx.Client, config: object, message: str
) -> None:
    response = client.put("/_sim/config", json=config)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_config"
    assert message in response.json()["error"]["message"]


def test_config_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.put("/_sim/config", content=b"seed: 1")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_rejected_config_leaves_the_old_one_in_force(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"api_keys": ["re_only"]})

    client.put("/_sim/config", json={"resend": {"bogus": True}})

    assert client.get("/_sim/config").json()["resend"]["api_keys"] == ["re_only"]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_config_files_load_as_json_or_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"simulator{suffix}"
    path.write_text(json.dumps(FAULTY))  # JSON is valid YAML too

    config = load_config(path)

    assert config == SimulatorConfig.model_validate(FAULTY)


def test_yaml_config_file(tmp_path: Path) -> None:
    path = tmp_path / "simulator.yaml"
    path.write_text(
        "seed: 9\n"
        "twilio:\n"
        "  invalid_recipients: ['+14155550100']\n"
        "  faults:\n"
        "    error_rates: {503: 0.1}\n"
        "    retry_after_seconds: 4\n"
    )

    config = load_config(path)

    assert config.seed == 9
    assert config.twilio.invalid_recipients == ["+14155550100"]
    assert config.twilio.faults.error_rates == {503: 0.1}


def test_empty_config_file_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")

    assert load_config(path) == SimulatorConfig()


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("simulator.toml", "seed = 1", ValueError),
        ("simulator.yaml", "seed: [1", ValueError),
        ("simulator.json", "{", ValueError),
        ("simulator.json", '{"seed": "soon"}', ValidationError),
    ],
)
def test_bad_config_files_raise(
    tmp_path: Path, name: str, content: str, error: type[Exception]
) -> None:
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(error):
        load_config(path)


def test_messages_filter_by_provider_and_recipient(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    send_resend(client)
    send_sendgrid(client)
    send_twilio(client)

    by_provider = client.get("/_sim/messages", params={"provider": "twilio"}).json()
    by_recipient = client.get("/_sim/messages", params={"recipient": "lead@example.com"}).json()

    assert [m["provider"] for m in by_provider["messages"]] == ["twilio"]
    assert [m["provider"] for m in by_recipient["messages"]] == ["resend", "sendgrid"]
    assert by_provider["idempotency_counts"] == {}


def test_idempotency_counts_are_served_on_their_own(client: httpx.Client) -> None:
    send_resend(client, headers={"Authorization": "Bearer re_test_x", "Idempotency-Key": "k"})
    send_resend(client, headers={"Authorization": "Bearer re_test_x", "Idempotency-Key": "k"})

    assert client.get("/_sim/idempotency").json() == {"counts": {"k": 1}}
    assert client.get("/_sim/messages", params={"idempotency_key": "k"}).json()[
        "idempotency_counts"
    ] == {"k": 1}


def test_requests_log_refusals_with_their_status(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    send_resend(client, headers={})
    send_resend(client)

    logged = sim.requests("resend")
    refused = sim.requests(outcome="refused")

    assert [(r.status, r.outcome) for r in logged] == [(401, "refused"), (200, "accepted")]
    assert [r.id for r in refused] == [logged[0].id]
    assert logged[1].body is not None
    assert '"subject":"Hi"' in logged[1].body


def test_reset_forgets_records_but_keeps_the_config(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"api_keys": ["re_test_simulator_key"]})
    send_resend(client)
    client.post("/hooks/crm", content=b"{}")

    response = client.post("/_sim/reset")

    assert response.json() == {"reset": True}
    assert sim.messages() == []
    assert sim.requests() == []
    assert sim.hook_deliveries() == []
    assert client.get("/_sim/config").json()["resend"]["api_keys"] == ["re_test_simulator_key"]


def simulate_command() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate)
    return app


def test_cli_serves_the_configured_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(
        "lqs.cli.run.serve_app",
        lambda app, host, port, announce, **options: served.update(app=app, host=host, port=port),
    )
    path = tmp_path / "simulator.yaml"
    path.write_text("seed: 5\nresend:\n  enforce_rate_limit: true\n")

    result = CliRunner().invoke(
        simulate_command(), ["--config", str(path), "--host", "127.0.0.2", "--port", "9025"]
    )

    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.2", 9025)
    config = served["app"].state.simulator.config
    assert config.seed == 5
    assert config.resend.enforce_rate_limit is True


def test_cli_refuses_an_invalid_config_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"resend": {"faults": {"timeout_rate": 2}}}')

    result = CliRunner().invoke(simulate_command(), ["--config", str(path)])

    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "resend.faults.timeout_rate" in result.output
