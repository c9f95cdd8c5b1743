"""Login, owner setup, logout and the account page (password, API tokens); `register` adds every
page of the UI to the route table, these and those of pages_site.py and pages_admin.py.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from web import pages_admin, pages_site
from web.auth import AuthError, Throttled
from web.routes import (
    PRE_COOKIE,
    SERVER,
    SESSION_COOKIE,
    clear_session_cookie,
    client_address,
    is_secure,
    principal_of,
    safe_next,
    set_session_cookie,
)

if TYPE_CHECKING:
    from web.routes import Routes


def _field(form: object, name: str, limit: int = 1100) -> str:
    value = form.get(name) if hasattr(form, "get") else None  # type: ignore[union-attr]
    return value[:limit] if isinstance(value, str) else ""


async def _anonymous_page(
    request: web.Request, template: str, status: int = 200, **context: object
) -> web.Response:
    """The login and setup forms carry a double-submit token: there is no session to bind to."""
    token = secrets.token_urlsafe(24)
    response = await request.app[SERVER].renderer.page(
        request, template, status=status, pre_token=token, **context
    )
    response.set_cookie(PRE_COOKIE, token, httponly=True, samesite="Strict",
                        secure=is_secure(request), path="/")  # fmt: skip
    return response


def _pre_ok(request: web.Request, form: object) -> bool:
    cookie = request.cookies.get(PRE_COOKIE, "")
    sent = _field(form, "pre_token", 100)
    return bool(cookie) and hmac.compare_digest(cookie, sent)


async def login_page(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    if await server.auth.needs_setup():
        raise web.HTTPSeeOther("/setup")
    target = safe_next(request.query.get("next"))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and await server.auth.session(cookie) is not None:
        raise web.HTTPSeeOther(target)
    return await _anonymous_page(request, "login.html", next=target, error="", name="")


async def login_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    form = await request.post()
    target = safe_next(_field(form, "next", 500))
    name = _field(form, "name", 64)
    if not _pre_ok(request, form):
        return await _anonymous_page(request, "login.html", 403, next=target, name=name,
                                     error="The form expired. Please try again.")  # fmt: skip
    try:
        secret, _ = await server.auth.login(
            name,
            _field(form, "password"),
            client_address(request),
            request.headers.get("User-Agent", ""),
            old=request.cookies.get(SESSION_COOKIE),
        )
    except Throttled as err:
        return await _anonymous_page(request, "login.html", 429, next=target, name=name,
                                     error=str(err))  # fmt: skip
    except AuthError as err:
        return await _anonymous_page(request, "login.html", 401, next=target, name=name,
                                     error=str(err))  # fmt: skip
    response = web.HTTPSeeOther(target)
    set_session_cookie(request, response, secret)
    response.del_cookie(PRE_COOKIE, path="/")
    raise response


async def setup_page(request: web.Request) -> web.StreamResponse:
    if not await request.app[SERVER].auth.needs_setup():
        raise web.HTTPSeeOther("/login")
    return await _anonymous_page(request, "setup.html", error="", name="")


async def setup_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    if not await server.auth.needs_setup():
        raise web.HTTPSeeOther("/login")
    form = await request.post()
    name, password = _field(form, "name", 64), _field(form, "password")
    if not _pre_ok(request, form):
        return await _anonymous_page(request, "setup.html", 403, name=name,
                                     error="The form expired. Please try again.")  # fmt: skip
    if password != _field(form, "confirm"):
        return await _anonymous_page(request, "setup.html", 400, name=name,
                                     error="The two passwords differ.")  # fmt: skip
    address = client_address(request)
    try:
        await server.auth.create_owner(name, password, address)
        secret, _ = await server.auth.login(
            name, password, address, request.headers.get("User-Agent", "")
        )
    except AuthError as err:
        return await _anonymous_page(request, "setup.html", 400, name=name, error=str(err))
    response = web.HTTPSeeOther("/")
    set_session_cookie(request, response, secret)
    response.del_cookie(PRE_COOKIE, path="/")
    raise response


async def logout_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await server.auth.logout(cookie, client_address(request))
    response = web.HTTPSeeOther("/login")
    clear_session_cookie(response)
    raise response


async def account_page(request: web.Request, new_token: str = "") -> web.Response:
    server = request.app[SERVER]
    me = principal_of(request)
    tokens = await server.auth.tokens(me.user_id)
    sessions = await server.auth.sessions_of(me.user_id)
    return await server.renderer.page(
        request, "account.html", title="Account", tokens=tokens, sessions=sessions,
        new_token=new_token, current=me.key,
    )  # fmt: skip


async def account_get(request: web.Request) -> web.StreamResponse:
    return await account_page(request)


async def password_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    me = principal_of(request)
    form = await request.post()
    new = _field(form, "new")
    if new != _field(form, "confirm"):
        server.renderer.flash(me, "error", "The two new passwords differ.")
        raise web.HTTPSeeOther("/account")
    try:
        secret, fresh = await server.auth.change_password(
            me, _field(form, "old"), new, client_address(request),
            request.headers.get("User-Agent", ""),
        )  # fmt: skip
    except AuthError as err:
        server.renderer.flash(me, "error", str(err))
        raise web.HTTPSeeOther("/account") from None
    server.renderer.flash(fresh, "ok", "Password changed; every other session was logged out.")
    response = web.HTTPSeeOther("/account")
    set_session_cookie(request, response, secret)
    raise response


async def token_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    form = await request.post()
    try:
        _, secret = await server.auth.create_token(principal_of(request), _field(form, "name", 64))
    except AuthError as err:
        server.renderer.flash(principal_of(request), "error", str(err))
        raise web.HTTPSeeOther("/account") from None
    # Shown on this one answer only (pages are never cached): the hub keeps just a digest.
    return await account_page(request, new_token=secret)


async def token_revoke_post(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    me = principal_of(request)
    token_id = request.match_info["token_id"]
    every = me.may("admin")
    if await server.auth.revoke_token(token_id, me, every):
        server.renderer.flash(me, "ok", "Token revoked.")
    else:
        server.renderer.flash(me, "error", "No such token.")
    form = await request.post()
    raise web.HTTPSeeOther(safe_next(_field(form, "return_to", 200) or "/account"))


def register(routes: Routes) -> None:
    # The explicit allow-list: the only routes anyone may use without logging in (plus /static).
    routes.add("GET", "/login", login_page, role=None)
    routes.add("POST", "/login", login_post, role=None)
    routes.add("GET", "/setup", setup_page, role=None)
    routes.add("POST", "/setup", setup_post, role=None)
    routes.add("POST", "/logout", logout_post)
    routes.add("GET", "/account", account_get)
    routes.add("POST", "/account/password", password_post)
    routes.add("POST", "/account/tokens", token_post)
    routes.add("POST", "/account/tokens/{token_id}/revoke", token_revoke_post)
    pages_site.register(routes)
    pages_admin.register(routes)
