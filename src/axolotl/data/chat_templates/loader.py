"""Reading bundled `.jinja` files and compiling chat templates the way transformers does.

The compiled template must render byte-for-byte what `tokenizer.apply_chat_template` renders,
because the tokens we train on have to be the tokens the model sees at inference. So the
environment copies transformers' choices: a sandbox (templates from the Hub are untrusted
code), `trim_blocks`/`lstrip_blocks`, loop controls, a `tojson` that does not HTML-escape,
`raise_exception`, `strftime_now`, and the `{% generation %}` tag that marks assistant text.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_SUFFIX = ".jinja"


def bundled_names() -> frozenset[str]:
    """Names of the templates shipped as `templates/<name>.jinja`."""
    return frozenset(path.stem for path in TEMPLATE_DIR.glob(f"*{TEMPLATE_SUFFIX}"))


@cache
def read_bundled(name: str) -> str:
    """The text of a bundled template; callers check the name against `bundled_names()` first."""
    return (TEMPLATE_DIR / f"{name}{TEMPLATE_SUFFIX}").read_text(encoding="utf-8")


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` renders its body unchanged.

    transformers uses the tag to record assistant character spans; we locate spans ourselves,
    but templates written for `return_assistant_tokens_mask` must still compile.
    """

    tags = frozenset({"generation"})

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # jinja's own filter escapes <, > and & for HTML, which would change the rendered prompt.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=32)
def compile_template(text: str) -> jinja2.Template:
    """Compile once per template text; every row of every batch reuses the result.

    The template's globals become a plain dict: jinja copies them into every render's context,
    and copying its default ChainMap was a tenth of chat rendering time. Our environment's globals
    are fixed when it is built, so nothing is lost by the snapshot."""
    template = _environment().from_string(text)
    template.globals = dict(template.globals)
    return template
