"""Which of the README's shell blocks run (tests/readme_blocks.py), and how they are run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.readme_blocks import ReadmeError, session_script, shell_blocks, with_ports

ROOT = Path(__file__).resolve().parents[2]

DOC = """# Title

```sh
echo one
```

<!-- readme-test: skip (needs a cloud account) -->
```sh
echo never
```

```yaml
a: 1
```

```bash
echo two \\
  continued
```

```
plain text, not a command
```
"""


def test_the_shell_blocks_are_found_in_order_with_their_lines_and_skips(tmp_path: Path) -> None:
    blocks = shell_blocks(DOC, tmp_path)

    assert [(b.first_line, b.lines, b.skip) for b in blocks] == [
        (4, ["echo one"], None),
        (9, ["echo never"], "needs a cloud account"),
        (17, ["echo two \\", "  continued"], None),
    ]


def test_the_readme_has_runnable_blocks_and_every_skip_says_why() -> None:
    blocks = shell_blocks((ROOT / "README.md").read_text(encoding="utf-8"), ROOT)

    running = [b for b in blocks if b.skip is None]
    assert any(line.startswith(". .venv/bin/activate") for b in running for line in b.lines)
    assert any("lqs serve --port 8000 &" in line for b in running for line in b.lines)
    assert all(b.skip and b.skip.strip() for b in blocks if b.skip is not None)


def test_skip_until_skips_while_the_file_is_missing(tmp_path: Path) -> None:
    doc = "# T\n\n<!-- readme-test: skip until docs/x.csv exists -->\n```sh\nlqs x\n```\n"

    [block] = shell_blocks(doc, tmp_path)

    assert block.skip == "until docs/x.csv exists"


def test_a_skip_until_whose_file_exists_is_stale(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.csv").write_text("email\n")
    doc = "# T\n\n<!-- readme-test: skip until docs/x.csv exists -->\n```sh\nlqs x\n```\n"

    with pytest.raises(ReadmeError, match=r"line 3: docs/x.csv exists now: remove the marker"):
        shell_blocks(doc, tmp_path)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("# T\n<!-- readme-test: skip -->\n```sh\nx\n```\n", "unknown readme-test marker"),
        ("# T\n<!-- readme-test: run twice -->\n```sh\nx\n```\n", "unknown readme-test marker"),
        ("# T\n<!-- readme-test: skip (a) -->\n\n```sh\nx\n```\n", "line 2: .* just before"),
        ("# T\n<!-- readme-test: skip (a) -->\n```yaml\nx\n```\n", "line 2: .* just before"),
        ("# T\n\n<!-- readme-test: skip (a) -->\n", "line 3: .* just before"),
        ("# T\n```sh\nlqs x\n", "line 2: the ``` fence is never closed"),
    ],
)
def test_malformed_markers_and_fences_are_errors(tmp_path: Path, doc: str, message: str) -> None:
    with pytest.raises(ReadmeError, match=message):
        shell_blocks(doc, tmp_path)


def test_only_the_ports_change() -> None:
    text = (
        "lqs serve --port 8000 &\ncurl localhost:8000/healthz\n"
        "lqs simulate --port 8025 &\nbase_url: http://127.0.0.1:8025\n"
        "lqs keys create --rate-limit 8000\necho 80000 :80001\n"
    )

    assert with_ports(text, 41000, 41025) == (
        "lqs serve --port 41000 &\ncurl localhost:41000/healthz\n"
        "lqs simulate --port 41025 &\nbase_url: http://127.0.0.1:41025\n"
        "lqs keys create --rate-limit 8000\necho 80000 :80001\n"
    )


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "session.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_session_keeps_readme_line_numbers_and_names_the_failing_command(
    tmp_path: Path,
) -> None:
    doc = '# T\n\n```sh\nx=1\necho "$x"\n```\n\ntext\n\n```sh\nfalse\necho after\n```\n'

    result = _run(session_script(doc, shell_blocks(doc, tmp_path)), tmp_path)

    assert result.returncode == 1
    assert result.stdout == "1\n"
    assert "README.md line 11 failed (exit 1): false" in result.stderr


def test_the_session_stops_at_an_unset_variable(tmp_path: Path) -> None:
    doc = '# T\n\n```sh\necho "$undefined"\necho after\n```\n'

    result = _run(session_script(doc, shell_blocks(doc, tmp_path)), tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "line 4: undefined: unbound variable" in result.stderr


def test_the_session_stops_at_a_failing_pipeline(tmp_path: Path) -> None:
    doc = "# T\n\n```sh\nfalse | cat\necho after\n```\n"

    result = _run(session_script(doc, shell_blocks(doc, tmp_path)), tmp_path)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "README.md line 4 failed (exit 1)" in result.stderr


def test_skipped_blocks_do_not_run_and_background_jobs_are_stopped(tmp_path: Path) -> None:
    doc = (
        "# T\n\n<!-- readme-test: skip (no) -->\n```sh\nexit 3\n```\n\n"
        f"```sh\nsleep 300 &\necho $! > {tmp_path}/pid\n```\n"
    )

    result = _run(session_script(doc, shell_blocks(doc, tmp_path)), tmp_path)

    assert result.returncode == 0, result.stderr
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()  # killed, and reaped by the session
