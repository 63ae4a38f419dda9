"""The ``lqs`` entry point's promise about errors, in a real process: any ``LqsError`` is one
actionable line and exit 1; anything else is a bug and shows its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Two commands added to the real app, then the real entry point (lqs.cli:main) runs one.
_PROGRAM = textwrap.dedent(
    """
    import sys

    import lqs.cli
    from lqs.errors import ConfigurationError

    @lqs.cli.app.command("raise-lqs-error")
    def raise_lqs_error() -> None:
        raise ConfigurationError(
            "the rules for 'acme' do not parse",
            action="fix them with `lqs clients set-rules acme FILE`",
        )

    @lqs.cli.app.command("raise-bug")
    def raise_bug() -> None:
        raise RuntimeError("a bug, not a user's problem")

    sys.argv = ["lqs", sys.argv[1]]
    lqs.cli.main()
    """
)


def _run(command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_lqs_error_is_one_line_naming_the_problem_and_the_action() -> None:
    result = _run("raise-lqs-error")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the rules for 'acme' do not parse; fix them with `lqs clients set-rules acme FILE`"
    ]


def test_an_unexpected_exception_keeps_its_traceback() -> None:
    result = _run("raise-bug")

    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "RuntimeError: a bug, not a user's problem" in result.stderr
