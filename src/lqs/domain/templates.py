"""Tenant message templates, rendered in Jinja2's sandbox with size and time limits.

Templates are written by tenants, so they are untrusted: rendering happens in a
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute tricks, no mutation of
the variables), a missing variable is an error (``StrictUndefined``), HTML bodies are
autoescaped, subjects lose their line breaks (no header injection), output is capped, and a
deadline is checked while rendering, so a template cannot hang the worker that renders it.

Variables the processor passes (see ``default_templates``): ``lead`` (every lead field;
values may be None), ``client`` (``name``, ``slug``), ``score``, ``grade``, ``outcome`` and
``breakdown`` (a list of ``{rule_id, rule_version, field, value, points, reason}``).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal

from jinja2 import StrictUndefined, Template
from jinja2 import TemplateError as JinjaError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from lqs.domain.vocabulary import CommunicationType

MAX_SUBJECT_CHARS = 998
"""RFC 5322's line limit."""


@dataclass(frozen=True)
class MessageTemplate:
    """One version of a template: Jinja2 source for the subject and the body."""

    template_id: str
    version: int
    channel: CommunicationType
    subject: str | None
    body: str
    body_format: Literal["html", "text"]

    @property
    def ref(self) -> str:
        return f"{self.template_id} v{self.version}"


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None
    content: str


class TemplateError(Exception):
    """Raised when a template does not compile or fails to render; says which and why."""


class _DeadlineExceeded(Exception):
    pass


MAX_SEQUENCE = 100_000
"""The longest string or list a template may build with ``*`` (``'x' * 10**9`` is refused)."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus a deadline checked on every call and loop step, and bounded ``*``.

    Attribute and item access are not checked: they cannot loop by themselves, and every
    loop a template can write steps through ``range`` or through data it was given.
    """

    intercepted_binops = frozenset({"*", "**"})
    deadline: float = float("inf")

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise _DeadlineExceeded

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._check()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponents above 100 are not allowed in templates")
            if isinstance(left, int) and left.bit_length() * abs(right) > 10_000:
                raise SecurityError("powers over 10,000 bits are not allowed in templates")
            return left**right
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(sequence, str | list | tuple)
                and isinstance(count, int)
                and len(sequence) * count > MAX_SEQUENCE
            ):
                raise SecurityError(f"templates may not build sequences over {MAX_SEQUENCE} items")
        return left * right


def _make_environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(autoescape=autoescape, undefined=StrictUndefined, auto_reload=False)

    def checked_range(*args: int) -> Iterator[int]:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise OverflowError(f"range of {len(numbers)} items is over the limit of {MAX_RANGE}")
        for number in numbers:
            env._check()
            yield number

    env.globals["range"] = checked_range
    return env


class TemplateRenderer:
    """Compiles (once, cached) and renders templates within limits."""

    def __init__(
        self,
        *,
        max_output_chars: int = 100_000,
        time_limit: float = 0.25,
        cache_size: int = 512,
    ) -> None:
        self.max_output_chars = max_output_chars
        self.time_limit = time_limit
        self._html = _make_environment(autoescape=True)
        self._text = _make_environment(autoescape=False)
        self._cache: OrderedDict[tuple[str, int, str, bool], Template] = OrderedDict()
        self._cache_size = cache_size
        self.compiled_count = 0

    def check(self, template: MessageTemplate) -> None:
        """Compile both parts.

        Raises:
            TemplateError: a syntax error, naming the template, the part and the line.
        """
        if template.subject is not None:
            self._compile(template, template.subject, autoescape=False, part="subject")
        self._compile(
            template, template.body, autoescape=template.body_format == "html", part="body"
        )

    def render(self, template: MessageTemplate, variables: Mapping[str, object]) -> RenderedMessage:
        """Render subject and body with ``variables``.

        Raises:
            TemplateError: syntax error, missing variable, sandbox violation, any error
                raised inside the template, output over ``max_output_chars``, or rendering
                past ``time_limit`` seconds.
        """
        deadline = time.monotonic() + self.time_limit
        subject = None
        if template.subject is not None:
            raw = self._render_part(
                template, template.subject, False, "subject", variables, deadline
            )
            subject = " ".join(raw.split())[:MAX_SUBJECT_CHARS]
        body = self._render_part(
            template, template.body, template.body_format == "html", "body", variables, deadline
        )
        return RenderedMessage(subject=subject, content=body)

    def _compile(
        self, template: MessageTemplate, source: str, *, autoescape: bool, part: str
    ) -> Template:
        digest = hashlib.sha256(source.encode()).hexdigest()
        key = (template.template_id, template.version, digest, autoescape)
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
            return compiled
        env = self._html if autoescape else self._text
        try:
            compiled = env.from_string(source)
        except JinjaError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            raise TemplateError(f"template {template.ref} {part}{where}: {exc}") from exc
        self.compiled_count += 1
        self._cache[key] = compiled
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled

    def _render_part(
        self,
        template: MessageTemplate,
        source: str,
        autoescape: bool,
        part: str,
        variables: Mapping[str, object],
        deadline: float,
    ) -> str:
        compiled = self._compile(template, source, autoescape=autoescape, part=part)
        env = self._html if autoescape else self._text
        env.deadline = deadline
        blocks: list[str] = []
        size = 0
        try:
            chunks = compiled.generate(dict(variables))
            # Checked per block of chunks, not per chunk: the loop is on every render's path.
            while piece := list(islice(chunks, 64)):
                block = "".join(piece)
                size += len(block)
                blocks.append(block)
                if size > self.max_output_chars:
                    raise TemplateError(
                        f"template {template.ref} {part}: output exceeds "
                        f"{self.max_output_chars} characters"
                    )
                env._check()
        except TemplateError:
            raise
        except _DeadlineExceeded:
            raise TemplateError(
                f"template {template.ref} {part}: rendering took longer than {self.time_limit:g} s"
            ) from None
        except Exception as exc:  # tenant code: any failure is the template's own
            raise TemplateError(
                f"template {template.ref} {part}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            env.deadline = float("inf")
        return "".join(blocks)
