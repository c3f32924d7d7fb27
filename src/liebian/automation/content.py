"""Personalized message content (千人千面): Jinja2 in a sandbox, with a whitelist.

A template may print the contact's fields, attributes and tags, and the journey's name, through
a few harmless filters (``default`` first of all). Anything else — calls, loops, macros,
attribute walks beyond one field, unknown fields — is refused when the journey is saved, so
no code runs from a template. A field without a value renders the operator's ``default``;
without a default the message is not sent (never a blank or an error text to a customer).
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from liebian.kit.errors import Invalid

CONTACT_FIELDS = frozenset(
    {"id", "external_id", "nickname", "first_channel", "last_channel", "orders_count"}
)
ROOTS = frozenset({"contact", "attributes", "journey", "tags", "campaign", "links"})
# ``links.<slug>`` (or ``links['my-slug']``): one of the workspace's short links, tracked per
# person: it renders ``<public base>/<slug>?lb_u=<token>``, a keyed token of the contact's
# external id, so the redirect records the click under that person (their timeline, segments
# and attribution see it) and nobody can forge another person's click by editing the link. A
# contact without an external id gets the plain short link (counted, not credited).
# A send step with a ``campaign_id``: the person's own invite link in that campaign (they
# must be a participant — an earlier enrol_campaign step — or the default is used), and the
# link to their poster page (``/p/<campaign>/me/poster``: long-press to save). The link
# carries no sign-in (a message is easily forwarded): on a phone where the person is not signed
# in to the campaign pages it shows the pages' 请先登录 notice.
CAMPAIGN_FIELDS = frozenset({"name", "invite_url", "invite_code", "poster_url"})
FILTERS = frozenset({"default", "upper", "lower", "trim", "truncate", "replace"})
MAX_TEMPLATE = 4000

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class MissingField(Exception):
    """A field had no value and the template gave no default."""


def check_template(
    text: str,
    field: str,
    attribute_keys: frozenset[str] | None = None,
    *,
    campaign: bool = False,
    link_slugs: frozenset[str] | None = None,
) -> None:
    """Raise a 422 naming ``field`` when ``text`` is not a safe, known template
    (``campaign``: the step names a campaign, so ``campaign.<field>`` is known; ``link_slugs``:
    the short links of the workspace a template may name, None: any)."""
    if len(text) > MAX_TEMPLATE:
        raise _bad(field, f"at most {MAX_TEMPLATE} characters", "template_too_long")
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise _bad(
            field, f"template syntax error on line {exc.lineno}: {exc.message}", "template_syntax"
        ) from None
    for node in tree.body:
        _check_statement(node, field, attribute_keys, campaign)
    for slug in _slugs(tree):
        if link_slugs is not None and slug not in link_slugs:
            raise _bad(
                field, f"links.{slug}: no short link {slug!r} in this workspace", "unknown_link"
            )


def linked_slugs(text: str) -> set[str]:
    """The short links a (checked) template names."""
    try:
        return _slugs(_ENV.parse(text))
    except TemplateSyntaxError:
        return set()


def _slugs(tree: nodes.Template) -> set[str]:
    found: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "links":
            found.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "links"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            found.add(item.arg.value)
    return found


def _check_statement(
    node: nodes.Node, field: str, keys: frozenset[str] | None, campaign: bool = False
) -> None:
    if isinstance(node, nodes.Output):
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            _check_expr(child, field, keys, campaign)
        return
    raise _bad(
        field,
        f"templates may only print fields ({{{{ contact.nickname | default('朋友') }}}});"
        f" {type(node).__name__.lower()} blocks are not allowed",
        "template_code",
    )


def _check_expr(
    node: nodes.Node, field: str, keys: frozenset[str] | None, campaign: bool = False
) -> None:
    if isinstance(node, nodes.Const):
        return
    if isinstance(node, nodes.Filter):
        if node.name not in FILTERS:
            raise _bad(
                field,
                f"filter {node.name!r} is not allowed; use one of {', '.join(sorted(FILTERS))}",
                "template_code",
            )
        if node.node is not None:
            _check_expr(node.node, field, keys, campaign)
        for arg in node.args:
            if not isinstance(arg, nodes.Const):
                raise _bad(field, "filter arguments must be plain values", "template_code")
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise _bad(field, "filter arguments must be plain values", "template_code")
        return
    if isinstance(node, nodes.Name):
        if node.name == "tags":
            return
        raise _bad(
            field,
            f"unknown field {node.name!r}; use contact.<field>, "
            "attributes.<key>, journey.name, tags or links.<slug>",
            "template_unknown_field",
        )
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "links"
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return  # links['my-slug']: a slug that is not a name
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        root, attr = node.node.name, node.attr
        if root == "links":
            return
        if root == "contact" and attr in CONTACT_FIELDS:
            return
        if root == "journey" and attr == "name":
            return
        if root == "attributes" and (keys is None or attr in keys):
            return
        if root == "campaign" and campaign and attr in CAMPAIGN_FIELDS:
            return
        if root == "campaign":
            raise _bad(
                field,
                f"campaign.{attr}: give the send step a campaign_id; campaign fields: "
                f"{', '.join(sorted(CAMPAIGN_FIELDS))}",
                "template_unknown_field",
            )
        raise _bad(
            field,
            f"unknown field {root}.{attr}; contact fields: "
            f"{', '.join(sorted(CONTACT_FIELDS))}; attributes must be defined first",
            "template_unknown_field",
        )
    raise _bad(
        field,
        "templates may only print fields and plain values, e.g. "
        "{{ contact.nickname | default('朋友') }}; calls and expressions are not allowed",
        "template_code",
    )


def render(text: str, context: dict[str, Any]) -> str:
    """Render a checked template; :class:`MissingField` when a value is missing without a
    default."""
    try:
        return _ENV.from_string(text).render(**context)
    except UndefinedError as exc:
        raise MissingField(str(exc)) from None


def render_content(content: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {k: render(v, context) if isinstance(v, str) else v for k, v in content.items()}


def _bad(field: str, message: str, code: str) -> Invalid:
    return Invalid(f"{field}: {message}", code=code, details={"field": field})
