"""Tenant message templates, rendered in Jinja2's sandbox with time, size and memory limits.

Tenants write the templates, so they are untrusted. :class:`TemplateRenderer` renders them
in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no private attributes, no
mutation of the variables), with ``StrictUndefined`` (a missing variable is an error, not
an empty string), autoescaping for HTML bodies only, and subjects flattened to one line so
they cannot inject mail headers. Every failure, whatever its cause, is a
:class:`TemplateError` naming the template, so one bad template fails one communication
and never the worker.

Limits, enforced without threads or signals so that rendering can run inside an event loop:

- time: a deadline is checked on the first and every 16th iteration of every ``for``
  loop (the compiled loops are wrapped), on every call, on every filter but the few that
  take constant time (``default``, ``length``, ``first``, ...), and between batches of
  64 chunks of output;
- output: rendering stops within a batch of 64 chunks of passing ``max_output_chars``
  (each chunk is a literal of the source or one printed value, both under the cap);
- memory: an operation that would build a string or sequence over :data:`MAX_SEQUENCE`
  characters or items (``*``, ``+``, ``~``, ``%``, ``format``, ``join``, ``replace``,
  ``center``, ...) is refused before it runs, and one render may build at most
  :data:`MAX_BUILT` in all.

These limits bound what a template can make this process do, not the process itself: a
render may still allocate tens of megabytes before a limit stops it. For a hard memory
ceiling, render in a worker process with an address-space limit.

What a render produces must be storable: a subject or body holding text PostgreSQL cannot
store (NUL, a lone surrogate), however it was made (``'%c' % 0``, a filter, the lead's
own data), fails that render with a :class:`TemplateError` rather than the batch's write.

:meth:`TemplateRenderer.vet` is what a tenant's template must pass before it is stored: it
compiles, every variable it names exists (checked on the syntax tree), and it renders a
sample lead.

The variables the processor passes are described in :mod:`lqs.domain.default_templates`.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import chain, islice
from string import Formatter
from typing import Any, Literal

from jinja2 import StrictUndefined, Template, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

from lqs.domain.text import storable, unstorable_text
from lqs.domain.vocabulary import Channel
from lqs.errors import InputError

MAX_SUBJECT_CHARS = 998
"""RFC 5322's line limit; longer subjects are cut."""

MAX_SEQUENCE = 100_000
"""The most characters or items one template operation may build (``'x' * 10**9`` is refused)."""

MAX_BUILT = 10_000_000
"""The most characters or items all the operations of one render may build together."""

MAX_INT_BITS = 10_000
"""The largest integer a template may compute with ``*`` or ``**``."""

MAX_SOURCE_CHARS = 100_000
"""The longest subject or body source accepted: compiling is not time-limited (it happens
once per template version), and 100,000 characters compile in about half a second."""

_TEMPLATE_ID = re.compile(r"[a-z0-9_]{1,100}")


@dataclass(frozen=True)
class MessageTemplate:
    """One version of a template: Jinja2 source for the subject and the body.

    ``subject`` is plain text (an email subject, a push title) and is None for SMS;
    ``body_format`` says whether the body is autoescaped HTML or plain text.

    Raises:
        ValueError: ``template_id`` is not 1 to 100 of ``a-z``, ``0-9`` and ``_``, or
            ``version`` is below 1, or ``body_format`` is not ``html`` or ``text``.
    """

    template_id: str
    version: int
    channel: Channel
    subject: str | None
    body: str
    body_format: Literal["html", "text"]

    def __post_init__(self) -> None:
        if not _TEMPLATE_ID.fullmatch(self.template_id):
            raise ValueError(f"template id {self.template_id!r} must be 1 to 100 of a-z, 0-9 and _")
        if self.version < 1:
            raise ValueError(f"template {self.template_id}: version must be 1 or more")
        if self.body_format not in ("html", "text"):
            raise ValueError(f"template {self.template_id}: body format must be html or text")

    @property
    def ref(self) -> str:
        """How error messages name this template, e.g. ``lead_qualified v2``."""
        return f"{self.template_id} v{self.version}"


@dataclass(frozen=True)
class RenderedMessage:
    """A rendered message: a one-line subject (None if the template has none) and content."""

    subject: str | None
    content: str


class TemplateError(InputError):
    """Raised when a template does not compile or fails to render; says which and why.

    The message is always storable text: a NUL or a lone surrogate in it (quoted from a
    tenant's template or data) is written as an escape, ``\\x00`` or ``\\ud800``, since
    the processor stores the message as the communication's ``error_message``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(storable(message))


class TemplateRenderer:
    """Compiles templates (once each, in a bounded cache) and renders them within limits.

    One renderer may be shared by every render of a process, including renders in other
    threads: the cache is locked and the limits are per render.
    """

    def __init__(
        self,
        *,
        max_output_chars: int = 100_000,
        time_limit: float = 0.25,
        cache_size: int = 512,
    ) -> None:
        """Raises ValueError if a limit is not positive."""
        if max_output_chars < 1 or time_limit <= 0 or cache_size < 1:
            raise ValueError("max_output_chars, time_limit and cache_size must be positive")
        self.max_output_chars = max_output_chars
        self.time_limit = time_limit
        self._html = _Sandbox(autoescape=True, max_output_chars=max_output_chars)
        self._text = _Sandbox(autoescape=False, max_output_chars=max_output_chars)
        self._cache: OrderedDict[tuple[str, int, bool, str], Template] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self.compiled_count = 0
        """How many sources this renderer has compiled (cache hits do not count)."""

    def check(self, template: MessageTemplate) -> None:
        """Compile the subject and the body, as when a tenant saves a template.

        Raises:
            TemplateError: a syntax error or an unknown filter or test (naming the
                template, the part and the line), a source over
                :data:`MAX_SOURCE_CHARS`, or a source holding text PostgreSQL cannot
                store (see :func:`unstorable_text`).
        """
        for part, source in _parts(template):
            found = unstorable_text(source)
            if found is not None:
                raise TemplateError(
                    f"template {template.ref} {part}: the source contains {found}, "
                    "which cannot be stored"
                )
        self._compiled_parts(template)

    def unknown_names(
        self, template: MessageTemplate, variables: Mapping[str, object]
    ) -> list[str]:
        """The names the template reads that ``variables`` does not provide, one line each.

        Read from the syntax tree, so every branch counts, not just those a sample takes:
        a top-level name that is neither in ``variables`` nor a sandbox global
        (``range``, ``dict``, ``namespace``, ...) nor set by the template itself, and
        ``name.key`` or ``name['key']`` where ``variables[name]`` is a mapping without
        ``key`` (its methods such as ``get`` are allowed). Only the first level is
        checked: ``lead.custom.anything`` passes, as custom fields vary per lead.
        Each line names the template, the part, the line and a close match if any:
        ``template t v1 body line 3: lead has no field 'emial' (did you mean 'email'?)``.

        Raises:
            TemplateError: the template does not compile (as :meth:`check`).
        """
        self.check(template)
        problems: list[str] = []
        known = sorted({*variables, *self._text.globals})
        for part, source in _parts(template):
            tree = self._text.parse(source)
            where = f"template {template.ref} {part}"
            free = meta.find_undeclared_variables(tree)
            for name in sorted(free - set(known)):
                lines = [n.lineno for n in tree.find_all(nodes.Name) if n.name == name]
                at = f" line {min(lines)}" if lines else ""
                problems.append(
                    f"{where}{at}: unknown variable {name!r}{_close_match(name, known)}"
                    f" (known: {', '.join(sorted(variables))})"
                )
            for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
                owner, key = _looked_up(node)
                if owner is None or key is None or owner not in free:
                    continue  # not a top-level variable: set by the template, or computed
                value = variables.get(owner)
                if not isinstance(value, Mapping) or key in value or key in _MAPPING_METHODS:
                    continue
                fields = sorted(str(k) for k in value)
                problems.append(
                    f"{where} line {node.lineno}: {owner} has no field {key!r}"
                    f"{_close_match(key, fields)} ({owner} has: {', '.join(fields)})"
                )
        return problems

    def vet(self, template: MessageTemplate, sample: Mapping[str, object]) -> None:
        """Check a template before it is stored: everything that would fail it later.

        In order: it compiles (:meth:`check`); it names no unknown variable or field
        (:meth:`unknown_names` against ``sample``, all problems at once); and it renders
        ``sample`` within the limits, to storable text (:meth:`render`). ``sample``
        should hold every variable the processor passes, with plausible values.

        Raises:
            TemplateError: the first failing step's problem(s), one line, ``; ``-joined.
        """
        problems = self.unknown_names(template, sample)
        if problems:
            raise TemplateError("; ".join(problems))
        try:
            self.render(template, sample)
        except TemplateError as exc:
            missing = sorted(
                {key for _, source in _parts(template) for key in self._custom_keys(source)}
                - _custom_fields(sample)
            )
            hint = ""
            if missing:
                hint = (
                    f" (it has no custom field {', '.join(map(repr, missing))}, as some"
                    f" leads will not: read one as lead.custom.get({missing[0]!r}) or"
                    f" lead.custom[{missing[0]!r}] | default(''))"
                )
            raise TemplateError(f"{exc}, rendering a sample lead{hint}") from exc

    def _custom_keys(self, source: str) -> set[str]:
        """The keys of ``lead.custom`` the source reads directly (``lead.custom.x``)."""
        keys: set[str] = set()
        for node in self._text.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
            inner = node.node if isinstance(node, nodes.Getattr | nodes.Getitem) else None
            owner, key = _looked_up(inner) if inner is not None else (None, None)
            if (owner, key) != ("lead", "custom"):
                continue
            if isinstance(node, nodes.Getattr) and node.attr not in _MAPPING_METHODS:
                keys.add(node.attr)
            elif (
                isinstance(node, nodes.Getitem)
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                keys.add(node.arg.value)
        return keys

    def render(self, template: MessageTemplate, variables: Mapping[str, object]) -> RenderedMessage:
        """Render the subject and the body with ``variables``.

        The subject is rendered as plain text, every run of whitespace in it (line breaks
        included) becomes one space, and it is cut to :data:`MAX_SUBJECT_CHARS`. The body
        is autoescaped if its format is ``html``. ``variables`` are not modified.
        ``time_limit`` covers rendering both parts, not compiling them (which happens once
        per template version).

        Raises:
            TemplateError: a syntax error, a missing variable, a sandbox violation, any
                exception raised while rendering, output over ``max_output_chars``, an
                operation over the memory limits, or rendering past ``time_limit``
                seconds. The message names the template, the part and the cause.
        """
        subject_code, body_code = self._compiled_parts(template)
        limits = _RenderLimits(deadline=time.monotonic() + self.time_limit)
        token = _LIMITS.set(limits)
        try:
            subject = None
            if subject_code is not None:
                one_line = " ".join(self._run(template, "subject", subject_code, variables).split())
                subject = one_line[:MAX_SUBJECT_CHARS]
            content = self._run(template, "body", body_code, variables)
        finally:
            _LIMITS.reset(token)
        # Once, on the final text: whatever made it (a literal, '%c' % 0, a filter, the
        # lead's data), this is what the database would refuse, failing the whole batch.
        for part, text in (("subject", subject), ("body", content)):
            found = None if text is None else unstorable_text(text)
            if found is not None:
                raise TemplateError(
                    f"template {template.ref} {part}: the output contains {found}, "
                    "which PostgreSQL cannot store"
                )
        return RenderedMessage(subject=subject, content=content)

    def _compiled_parts(self, template: MessageTemplate) -> tuple[Template | None, Template]:
        subject = None
        if template.subject is not None:
            subject = self._compiled(template, "subject", template.subject, autoescape=False)
        body = self._compiled(
            template, "body", template.body, autoescape=template.body_format == "html"
        )
        return subject, body

    def _compiled(
        self, template: MessageTemplate, part: str, source: str, *, autoescape: bool
    ) -> Template:
        # The source itself is the key: Python caches a string's hash, and unlike a
        # digest it cannot collide.
        key = (template.template_id, template.version, autoescape, source)
        # A hit takes no lock: OrderedDict's get and move_to_end are each atomic, and
        # an entry another thread evicted in between is simply recompiled next time.
        compiled = self._cache.get(key)
        if compiled is not None:
            try:  # noqa: SIM105 (hot: contextlib.suppress is a context manager per render)
                self._cache.move_to_end(key)
            except KeyError:
                pass
            return compiled
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(
                f"template {template.ref} {part}: source over {MAX_SOURCE_CHARS} characters"
            )
        try:
            compiled = (self._html if autoescape else self._text).from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"template {template.ref} {part} line {exc.lineno}: {exc.message}"
            ) from exc
        except Exception as exc:  # e.g. RecursionError from deeply nested brackets
            raise TemplateError(
                f"template {template.ref} {part}: does not compile: {type(exc).__name__}: {exc}"
            ) from exc
        with self._cache_lock:
            self.compiled_count += 1
            self._cache[key] = compiled
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _run(
        self,
        template: MessageTemplate,
        part: str,
        compiled: Template,
        variables: Mapping[str, object],
    ) -> str:
        # The compiled function's own generator, without Template.generate's wrapper
        # (it only rewrites tracebacks, and every failure becomes a TemplateError here).
        chunks = compiled.root_render_func(compiled.new_context(dict(variables)))
        output: list[str] = []
        size = 0
        try:
            # Chunks are taken _CHUNKS_PER_CHECK at a time (a C-level loop) and the
            # output cap and the deadline checked after each batch: one chunk is at most
            # a literal of the source or one printed value, both under the cap, so the
            # output stops within a batch of passing it. Loops, calls and filters check
            # the deadline too; this is the backstop for long runs of output.
            while True:
                batch = list(islice(chunks, _CHUNKS_PER_CHECK))
                size += sum(map(len, batch))
                if size > self.max_output_chars:
                    raise _OutputTooLong
                output += batch
                if len(batch) < _CHUNKS_PER_CHECK:
                    break  # a short batch: the template has finished
                _check_deadline()
        except _OutputTooLong:
            raise TemplateError(
                f"template {template.ref} {part}: output exceeds {self.max_output_chars} characters"
            ) from None
        except _DeadlineExceeded:
            raise TemplateError(
                f"template {template.ref} {part}: rendering took longer than {self.time_limit:g} s"
            ) from None
        except Exception as exc:  # tenant code: any failure is the template's own
            raise TemplateError(
                f"template {template.ref} {part}: {type(exc).__name__}: {exc}"
            ) from exc
        return "".join(output)


_CHUNKS_PER_CHECK = 64
"""Chunks of output taken between two checks of the output cap and the deadline."""


class _DeadlineExceeded(Exception):
    pass


class _OutputTooLong(Exception):
    pass


def _parts(template: MessageTemplate) -> list[tuple[str, str]]:
    parts = [("body", template.body)]
    if template.subject is not None:
        parts.insert(0, ("subject", template.subject))
    return parts


# What a template may call on a mapping variable besides its keys (``lead.get('x')``);
# the immutable sandbox refuses the mutating methods anyway.
_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})


def _looked_up(node: nodes.Node) -> tuple[str | None, str | None]:
    """For ``name.key`` or ``name['key']``: (name, key); for ``name[expr]``: (name, None);
    for anything else: Nones."""
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None, None
    owner = node.node
    if not (isinstance(owner, nodes.Name) and owner.ctx == "load"):
        return None, None
    if isinstance(node, nodes.Getattr):
        return owner.name, node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return owner.name, node.arg.value
    return owner.name, None


def _custom_fields(variables: Mapping[str, object]) -> set[str]:
    lead = variables.get("lead")
    custom = lead.get("custom") if isinstance(lead, Mapping) else None
    return {str(key) for key in custom} if isinstance(custom, Mapping) else set()


def _close_match(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _RenderLimits:
    """The deadline and the memory budget of the render in progress."""

    __slots__ = ("built", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.built = 0


# A context variable, not an attribute of the environment: environments are shared by
# every render, including renders in other threads.
_LIMITS: ContextVar[_RenderLimits | None] = ContextVar("lqs_template_limits", default=None)


def _check_deadline() -> None:
    limits = _LIMITS.get()
    if limits is not None and time.monotonic() > limits.deadline:
        raise _DeadlineExceeded


def _spend(size: int, what: str) -> None:
    limits = _LIMITS.get()
    if limits is not None:
        limits.built += size
        if limits.built > MAX_BUILT:
            raise SecurityError(
                f"{what}: templates may not build over {MAX_BUILT} characters or items in all"
            )


def _claim(size: int, what: str) -> None:
    """Refuse an operation that would build ``size`` characters or items, if too many."""
    if size > MAX_SEQUENCE:
        raise SecurityError(
            f"{what}: templates may not build sequences over {MAX_SEQUENCE} characters or items"
        )
    _spend(size, what)


_CONTAINERS = (list, tuple, dict, set, frozenset)

_SCALARS = frozenset({int, float, bool, type(None)})

_DICT_ATTRIBUTES = frozenset(dir(dict))


def _weight(value: object, limit: int = MAX_SEQUENCE) -> int:
    """Roughly how many characters ``str(value)`` takes; stops counting past ``limit``.

    A string counts its length, a container the weights of its items (a mapping: keys
    and values) plus one for each nested container, anything else one. Iterative (a
    deeply nested value cannot exhaust the stack), and the limit is checked after each
    container, so a value sharing one list many times costs at most ``limit`` steps.
    """
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 1
    total = 0
    pending: list[Any] = [value]
    while pending:
        container = pending.pop()
        items = chain.from_iterable(container.items()) if isinstance(container, dict) else container
        for item in items:
            kind = type(item)
            if kind is str:
                total += len(item) or 1
            elif kind in _SCALARS:
                total += 1
            elif isinstance(item, str):
                total += len(item) or 1
            elif isinstance(item, _CONTAINERS):
                pending.append(item)
                total += 1
            else:
                total += 1
        if total > limit:
            return total
    return total


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _replace_size(text: object, old: object, new: object, count: object = None) -> int:
    if isinstance(text, str) and isinstance(old, str):
        hits = text.count(old) if old else len(text) + 1
    else:
        hits = _weight(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return _weight(text) + hits * _weight(new)


def _join_size(items: object, separator: object = "", attribute: object = None) -> int:
    count = len(items) if isinstance(items, Sized) else 1
    return _weight(items) + count * _weight(separator)


_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _printf_size(pattern: object, arguments: object) -> int:
    size = _weight(pattern) + _weight(arguments)
    if isinstance(pattern, str):
        # Short patterns are mostly the template's own literals, such as '%+d': cached.
        # Long ones are not, so the cache never holds much text.
        size += _short_printf_widths(pattern) if len(pattern) <= 64 else _printf_widths(pattern)
    return size


def _printf_widths(pattern: str) -> int:
    """The widths and precisions of a ``%`` pattern's fields, added up.

    Raises:
        SecurityError: a ``*`` width or precision (taken from the arguments, unbounded).
    """
    size = 0
    for width, precision in _PRINTF_FIELD.findall(pattern):
        if "*" in (width, precision):
            raise SecurityError("'*' widths are not allowed in templates")
        size += int(width or 0) + int(precision or 0)
    return size


_short_printf_widths = functools.lru_cache(maxsize=1024)(_printf_widths)


def _format_size(pattern: str, arguments: object) -> int:
    size = len(pattern) + _weight(arguments)
    for _, _, spec, _ in Formatter().parse(pattern):
        if spec and "{" in spec:
            raise SecurityError("nested format fields are not allowed in templates")
        size += sum(int(number) for number in re.findall(r"\d+", spec or ""))
    return size


def _sum_size(iterable: object, attribute: object = None, start: object = 0) -> int:
    # Summing lists or strings copies the total again at every step.
    if not isinstance(start, int | float):
        raise SecurityError("the sum filter only adds numbers in templates")
    return 0


def _indent_size(
    text: object, width: object = 4, first: object = False, blank: object = False
) -> int:
    lines = text.count("\n") + 1 if isinstance(text, str) else 1
    return _weight(text) + lines * (_weight(width) if isinstance(width, str) else _int(width))


def _wordwrap_size(
    text: object,
    width: object = 79,
    break_long_words: object = True,
    wrapstring: object = None,
    break_on_hyphens: object = True,
) -> int:
    breaks = _weight(text) // max(_int(width), 1) + 1
    return _weight(text) + breaks * max(_weight(wrapstring), 1)


# Estimates of what a filter builds, from its arguments (after the context Jinja passes).
_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "batch": lambda value, linecount, fill_with=None: _int(linecount),
    "center": lambda value, width=80: max(_weight(value), _int(width)),
    "format": lambda value, *args, **kwargs: _printf_size(value, args or kwargs),
    "indent": _indent_size,
    "join": _join_size,
    "replace": _replace_size,
    "slice": lambda value, slices, fill_with=None: _int(slices),
    "sum": _sum_size,
    "wordwrap": _wordwrap_size,
}

# The same for methods of strings; the string comes first.
_STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda text, width, fill=" ": max(len(text), _int(width)),
    "join": lambda separator, items: _join_size(items, separator),
    "ljust": lambda text, width, fill=" ": max(len(text), _int(width)),
    "replace": _replace_size,
    "rjust": lambda text, width, fill=" ": max(len(text), _int(width)),
    "zfill": lambda text, width: max(len(text), _int(width)),
}

# Filters that turn any value into text, and so a big container into a big string.
_TEXT_FILTERS = frozenset(
    {"capitalize", "e", "escape", "filesizeformat", "float", "forceescape", "int", "lower",
     "pprint", "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
     "urlencode", "wordcount", "xmlattr"}
)  # fmt: skip

# Filters that take the same short time whatever their input (the value's own length
# or first item, a fallback, an attribute, a rounded number): they need no deadline
# check, the loop or call around them has one.
_CONSTANT_TIME_FILTERS = frozenset(
    {"abs", "attr", "count", "d", "default", "first", "length", "round"}
)

# Attributes that build unbounded values and that messages have no use for.
_REFUSED_ATTRIBUTES = frozenset(
    {"encode", "expandtabs", "from_bytes", "maketrans", "to_bytes", "translate"}
)


def _metered_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    if name in _CONSTANT_TIME_FILTERS:
        return original
    skip = 1 if hasattr(original, "jinja_pass_arg") else 0  # the context Jinja passes
    estimate = _FILTER_SIZES.get(name)

    if estimate is not None:

        @functools.wraps(original)
        def estimated(*args: Any, **kwargs: Any) -> Any:
            _check_deadline()
            if len(args) > skip:
                if name == "join" and not isinstance(args[skip], Sized):
                    args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
                _claim(estimate(*args[skip:], **kwargs), f"the {name} filter")
            return original(*args, **kwargs)

        return estimated

    if name in _TEXT_FILTERS:

        @functools.wraps(original)
        def to_text(*args: Any, **kwargs: Any) -> Any:
            _check_deadline()
            if len(args) > skip and isinstance(args[skip], _CONTAINERS):
                _claim(_weight(args[skip]), f"the {name} filter")
            return original(*args, **kwargs)

        return to_text

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        return original(*args, **kwargs)

    return timed


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range of {len(numbers)} items is over the limit of {MAX_RANGE}")
    return numbers


def _concat_output(parts: Iterable[str]) -> str:
    # Jinja joins captured output with this: {% set %} blocks, macros, caller().
    pieces = list(parts)
    _spend(sum(map(len, pieces)), "captured output")
    return "".join(pieces)


# Filters the compiler inserts; a space makes them names no template can write.
_ITERATE = "lqs iterate"
_CONCATENATE = "lqs concatenate"


@pass_context
def _iterate(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    # The deadline on the first item and every 16th after it: whatever in the body can
    # repeat work (a nested loop, a call, a filter) checks it on its own.
    for count, item in enumerate(iterable):
        if not count & 15:
            _check_deadline()
        yield item


@pass_context
def _concatenate(context: Context, *parts: Any) -> str:
    _claim(sum(_weight(part) for part in parts), "~")
    return markup_join(parts) if context.eval_ctx.autoescape else str_join(parts)


class _MeteredCodeGenerator(CodeGenerator):
    """Compiles ``for x in y`` as ``for x in y|iterate`` and ``a ~ b`` as
    ``a|concatenate(b)``, so that a loop with an empty body still checks the deadline and
    a concatenation is measured before it runs. (``pass_context`` keeps the compiler from
    running them on constants at compile time.)"""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Metering().visit(node)
        node.set_environment(self.environment)
        super().visit_Template(node, frame)


class _Metering(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _ITERATE, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return nodes.Filter(first, _CONCATENATE, rest, [], None, None, lineno=node.lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus the deadline and the memory limits.

    Attribute and item access do not check the deadline: they cannot loop, and every way
    a template can repeat work (a loop, a macro, a filter such as ``map``) already does.
    """

    code_generator_class = _MeteredCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool, max_output_chars: int) -> None:
        def finalize(value: object) -> object:
            kind = type(value)
            if kind is str or isinstance(value, str):
                size = len(value)  # type: ignore[arg-type]
                if size > max_output_chars:
                    raise _OutputTooLong
                # Printed as it is, a string is not built again: the output cap (in
                # batches of chunks) and, for output captured by {% set %} or a macro,
                # Environment.concat measure it. Autoescaping copies a plain string (not
                # Markup, already escaped), so that counts (inlined: this runs for
                # every printed value).
                if autoescape and kind is str:
                    limits = _LIMITS.get()
                    if limits is not None:
                        limits.built += size
                        if limits.built > MAX_BUILT:
                            _spend(0, "output")  # raises, with the message
                return value
            if kind in _SCALARS:
                return value  # a number prints in a few characters
            # Anything else is measured before Jinja turns it into text: str() of a big
            # container is costly.
            weight = _weight(value, max_output_chars)
            if weight > max_output_chars:
                raise _OutputTooLong
            _spend(weight, "output")
            return value

        super().__init__(
            autoescape=autoescape, undefined=StrictUndefined, finalize=finalize, auto_reload=False
        )
        self.concat = _concat_output  # type: ignore[method-assign]
        self.globals["range"] = _limited_range
        del self.globals["lipsum"]  # builds up to n * max words in one uninterruptible call
        del self.filters["urlize"]  # repeats its link attributes for every link in the text
        self.filters = {name: _metered_filter(name, f) for name, f in self.filters.items()}
        self.filters.update({_ITERATE: _iterate, _CONCATENATE: _concatenate})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``lead.email`` on a plain dict: Jinja tries the attribute first and takes the
        # item on AttributeError, an exception per lookup. A dict has no attributes but
        # its class's, so for any other name the item is the answer, found directly.
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr in _REFUSED_ATTRIBUTES and isinstance(obj, str | int):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        pattern: str = value.__self__

        def metered(*args: Any, **kwargs: Any) -> str:
            _claim(_format_size(pattern, (args, kwargs)), "str.format")
            return formatter(*args, **kwargs)

        return metered

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name == "join" and args and not isinstance(args[0], Sized):
                args = (list(args[0]), *args[1:])
            estimate = _STR_METHOD_SIZES.get(name)
            if estimate is not None:
                _claim(estimate(owner, *args, **kwargs), f"str.{name}")
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("exponents above 100 are not allowed in templates")
            if isinstance(left, int) and left.bit_length() * abs(right) > MAX_INT_BITS:
                raise SecurityError("powers over 10,000 bits are not allowed in templates")
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError("products over 10,000 bits are not allowed in templates")
            elif isinstance(left, str | list | tuple) and isinstance(right, int):
                _claim(_weight(left) * right, "*")
            elif isinstance(right, str | list | tuple) and isinstance(left, int):
                _claim(_weight(right) * left, "*")
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _claim(_weight(left) + _weight(right), "+")
        elif operator == "%" and isinstance(left, str):
            _claim(_printf_size(left, right), "%")
        return self.binop_table[operator](left, right)
