"""The accounts admin page of the web UI (`/plugins/accounts/`, "Drivers"): organisations,
accounts and their tokens for viewers and up (token ids masked and pseudonymized unless the user
is an admin); admins also get forms to create an account, add a token and block or unblock one.

Every change goes through the `accounts.*` services; every value is escaped by jinja2's
autoescape. Imported only when the web UI runs (aiohttp and jinja2 are the UI's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from hub.bus import Context
from web.routes import SERVER, principal_of

BASE = "/plugins/accounts/"
_FIELD_LIMIT = 200

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE = _ENV.from_string(
    """\
<h2>Organisations</h2>
{% if organisations %}
<table>
<thead><tr><th>Id</th><th>Name</th><th>Group</th><th>Plan</th><th>Status</th></tr></thead>
<tbody>
{% for org in organisations %}
<tr><td>{{ org.id }}</td><td>{{ org.name }}</td><td>{{ org.group or "-" }}</td>
<td>{{ org.plan or "-" }}</td><td>{{ "blocked" if org.blocked else "active" }}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}<p>No organisations.</p>{% endif %}

<h2>Accounts</h2>
{% if accounts %}
<table class="accounts">
<thead><tr><th>Id</th><th>Name</th><th>Organisation</th><th>Status</th><th>Tokens</th></tr></thead>
<tbody>
{% for account in accounts %}
<tr><td>{{ account.id }}</td><td>{{ account.name or "-" }}</td>
<td>{{ account.organisation or "-" }}</td><td>{{ account.status }}</td>
<td>{% if account.tokens %}<ul>
{% for token in account.tokens %}<li>{{ token_row(token) }}</li>
{% endfor %}</ul>{% else %}-{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}<p>No accounts.</p>{% endif %}

{% if pool %}
<h2>Organisation tokens</h2>
<ul>
{% for token in pool %}<li>{{ token.organisation }}: {{ token_row(token) }}</li>
{% endfor %}
</ul>
{% endif %}

{% if admin %}
<h2>New account</h2>
<form method="post" action="{{ base }}accounts">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label>Id <input name="id" placeholder="generated when empty"></label>
<label>Name <input name="name" required></label>
<label>E-mail <input name="email" type="email"></label>
<label>Organisation <select name="organisation"><option value="">none</option>
{% for org in organisations %}<option value="{{ org.id }}">{{ org.name }}</option>
{% endfor %}</select></label>
<button type="submit">Create account</button>
</form>

<h2>New token</h2>
<form method="post" action="{{ base }}tokens">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label>Card id <input name="id" required></label>
<label>Account <select name="account">
{% for account in accounts %}
<option value="{{ account.id }}">{{ account.id }} ({{ account.name }})</option>
{% endfor %}</select></label>
<label>Label <input name="label"></label>
<button type="submit">Add token</button>
</form>
{% endif %}
"""
)
_TOKEN = _ENV.from_string(
    """\
{% if admin %}{{ token.id }}{% else %}{{ token.masked }} ({{ token.pseudonym }}){% endif %}
{% if token.label %} "{{ token.label }}"{% endif %} [{{ token.status }}]
{% if admin %}{% set verb = "unblock" if token.blocked else "block" %}
<form method="post" action="{{ base }}tokens/{{ verb }}">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<input type="hidden" name="id" value="{{ token.id }}">
<button type="submit">{{ verb | capitalize }}</button>
</form>{% endif %}"""
)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip()[:_FIELD_LIMIT] if isinstance(value, str) else ""


async def page(request: web.Request) -> Markup:
    server = request.app[SERVER]
    principal = principal_of(request)
    admin = principal.may("admin")
    listing = await server.hub.services.call(
        "accounts", "list_accounts", {"raw_ids": admin}, Context(user_id=principal.user_id)
    )
    csrf = principal.csrf or ""

    def token_row(token: dict[str, Any]) -> Markup:
        return Markup(_TOKEN.render(token=token, admin=admin, base=BASE, csrf_token=csrf))

    return Markup(
        _PAGE.render(
            organisations=listing["organisations"],
            accounts=listing["accounts"],
            pool=listing["organisation_tokens"],
            admin=admin,
            base=BASE,
            csrf_token=csrf,
            token_row=token_row,
        )
    )


def _action(
    service: str, build: Callable[[Any], dict[str, Any]], done: str
) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        server = request.app[SERVER]
        principal = principal_of(request)
        form = await request.post()
        data = {k: v for k, v in build(form).items() if v not in ("", None)}
        try:
            await server.hub.services.call(
                "accounts", service, data, Context(user_id=principal.user_id)
            )
        except (LookupError, ValueError) as err:  # bad input, unknown ids: tell the admin
            server.renderer.flash(principal, "error", str(err) or "The change was refused.")
        else:
            server.renderer.flash(principal, "ok", f"{done}.")
        raise web.HTTPSeeOther(BASE)

    return handler


def register_routes(register: Callable[..., None]) -> None:
    admin = ["admin"]
    register("GET", BASE, page, roles=["viewer"], page="Drivers")
    register(
        "POST",
        BASE + "accounts",
        _action(
            "create_account",
            lambda f: {
                "id": _field(f, "id"),
                "name": _field(f, "name"),
                "email": _field(f, "email"),
                "organisation": _field(f, "organisation"),
            },
            "Account created",
        ),
        roles=admin,
    )
    register(
        "POST",
        BASE + "tokens",
        _action(
            "add_token",
            lambda f: {
                "id": _field(f, "id"),
                "account": _field(f, "account"),
                "label": _field(f, "label"),
            },
            "Token added",
        ),
        roles=admin,
    )
    for action, done in (("block", "Token blocked"), ("unblock", "Token unblocked")):
        register(
            "POST",
            f"{BASE}tokens/{action}",
            _action(f"{action}_token", lambda f: {"id": _field(f, "id")}, done),
            roles=admin,
        )
