"""Logging in, the owner setup, sessions and their timeouts, CSRF, throttling and security headers:
given a hub with its web server on loopback and the simulated clock, when a browser does X, then Y.
"""

from __future__ import annotations

import logging

import pytest
from yarl import URL

from tests.web.conftest import PASSWORD, Web, csrf_of, login, pre_token
from web.routes import CSP


async def test_a_new_hub_asks_for_an_owner_account_and_only_once(web: Web) -> None:
    browser = web.client()
    first = await browser.get("/", allow_redirects=False)
    assert (first.status, first.headers["Location"]) == (303, "/login?next=/")
    login_page = await browser.get("/login", allow_redirects=False)
    assert (login_page.status, login_page.headers["Location"]) == (303, "/setup")

    page = await (await browser.get("/setup")).text()
    form = {"name": "Owner", "password": PASSWORD, "confirm": PASSWORD}
    forged = await browser.post("/setup", data={**form, "pre_token": "guess"})
    assert forged.status == 403 and await web.server.auth.needs_setup()
    page = await forged.text()  # the refused form comes back with a fresh token

    done = await browser.post("/setup", data={**form, "pre_token": pre_token(page)},
                              allow_redirects=False)  # fmt: skip
    assert (done.status, done.headers["Location"]) == (303, "/")
    assert [(u.name, u.role) for u in await web.server.auth.users()] == [("owner", "admin")]
    assert (await browser.get("/", allow_redirects=False)).status == 200

    # The setup page is gone for good: nobody can become a second owner through it.
    stranger = web.client()
    again = await stranger.get("/setup", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/login")
    page = await (await stranger.get("/login")).text()
    late = await stranger.post("/setup", data={**form, "name": "mallory",
                               "pre_token": pre_token(page)}, allow_redirects=False)  # fmt: skip
    assert late.status == 303 and len(await web.server.auth.users()) == 1


async def test_the_session_cookie_is_http_only_strict_and_never_one_we_did_not_make(
    web: Web,
) -> None:
    await web.user("ops", "operator")
    browser = web.client()
    planted = "attacker-chosen-session-id"  # session fixation: a cookie set before login
    browser.cookie_jar.update_cookies({"evhub_session": planted})
    first = await login(browser, "ops")
    cookie = first.cookies["evhub_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    assert not cookie["max-age"] and not cookie["expires"]  # dies with the browser
    assert cookie.value != planted and len(cookie.value) >= 40
    fixated = web.client()
    fixated.cookie_jar.update_cookies({"evhub_session": planted})
    assert (await fixated.get("/", allow_redirects=False)).status == 303

    # Logging in again from a browser that had a session ends the old one (ids rotate).
    other = web.client()
    await login(other, "ops")
    old = cookie.value
    page = await other.get("/login", allow_redirects=False)
    assert page.status == 303  # logged in already: straight back to the site
    again = web.client()
    again.cookie_jar.update_cookies({"evhub_session": old})
    form = await (await web.client().get("/login")).text()  # any pre token, for its cookie
    pre = pre_token(form)
    again.cookie_jar.update_cookies({"evhub_pre": pre})
    relogin = await again.post(
        "/login",
        data={"name": "ops", "password": PASSWORD, "pre_token": pre},
        allow_redirects=False,
    )
    assert relogin.status == 303 and relogin.cookies["evhub_session"].value != old
    stale = web.client()
    stale.cookie_jar.update_cookies({"evhub_session": old})
    assert (await stale.get("/api/auth/me")).status == 401


async def test_a_wrong_password_or_unknown_user_gets_the_same_answer(web: Web) -> None:
    await web.user("ops", "operator")
    browser = web.client()
    wrong = await login(browser, "ops", "not the password")
    nobody = await login(browser, "nobody", "not the password")
    assert wrong.status == nobody.status == 401
    assert "wrong user name or password" in await wrong.text()
    assert "wrong user name or password" in await nobody.text()


async def test_logins_are_throttled_per_account_on_the_hub_clock(web: Web) -> None:
    await web.user("ops", "operator")
    attacker = web.client()
    for _ in range(5):
        assert (await login(attacker, "ops", "guess-guess-guess")).status == 401
    blocked = await login(web.client(), "ops")  # even the right password, from anywhere
    assert blocked.status == 429
    assert "too many failed logins" in await blocked.text()
    await web.clock.advance(901)
    assert (await login(web.client(), "ops")).status == 303


async def test_logins_are_throttled_per_address(web: Web) -> None:
    await web.user("ops", "operator")
    attacker = web.client()
    for n in range(20):
        await login(attacker, f"user{n}", "guess-guess-guess")
    assert (await login(web.client(), "ops")).status == 429  # the same (loopback) address


async def test_an_idle_session_ends_and_so_does_an_old_busy_one(web: Web) -> None:
    browser, _ = await web.browser("ops", "operator")
    await web.clock.advance(3000)
    assert (await browser.get("/", allow_redirects=False)).status == 200
    await web.clock.advance(3601)  # idle for more than an hour
    assert (await browser.get("/", allow_redirects=False)).status == 303

    busy, _ = await web.browser("busy", "operator")
    for _ in range(25):  # active every 30 minutes, for over 12 hours
        await web.clock.advance(1800)
        if (await busy.get("/api/auth/me")).status != 200:
            break
    assert (await busy.get("/", allow_redirects=False)).status == 303


async def test_logout_ends_the_session_on_the_server(web: Web) -> None:
    browser, csrf = await web.browser("ops", "operator")
    cookie = browser.cookie_jar.filter_cookies(URL(web.url))["evhub_session"].value
    out = await browser.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert (out.status, out.headers["Location"]) == (303, "/login")
    replay = web.client()
    replay.cookie_jar.update_cookies({"evhub_session": cookie})
    assert (await replay.get("/api/auth/me")).status == 401


async def test_a_password_change_logs_out_every_other_session(web: Web) -> None:
    laptop, csrf = await web.browser("ops", "operator")
    phone = web.client()
    await login(phone, "ops")
    new = "a brand new passphrase"
    changed = await laptop.post(
        "/account/password",
        data={"csrf_token": csrf, "old": PASSWORD, "new": new, "confirm": new},
        allow_redirects=False,
    )
    assert changed.status == 303
    assert (await laptop.get("/api/auth/me")).status == 200  # a fresh session for this one
    assert (await phone.get("/api/auth/me")).status == 401
    assert (await login(web.client(), "ops")).status == 401
    assert (await login(web.client(), "ops", new)).status == 303


async def test_a_form_without_its_csrf_token_is_refused(web: Web) -> None:
    browser, csrf = await web.browser("admin")
    form = {"domain": "charger", "service": "stop", "data.entity_id": "charger.x_1"}
    assert (await browser.post("/actions/service", data=form)).status == 403
    wrong = await browser.post("/actions/service", data={**form, "csrf_token": "0" * 64})
    assert wrong.status == 403
    good = await browser.post(
        "/actions/service", data={**form, "csrf_token": csrf}, allow_redirects=False
    )
    assert good.status == 303


async def test_the_api_with_a_session_cookie_needs_the_csrf_header(web: Web) -> None:
    browser, csrf = await web.browser("admin")
    url = "/api/services/charger/stop"
    body = {"entity_id": "charger.none_1"}
    assert (await browser.post(url, json=body)).status == 403
    answered = await browser.post(url, json=body, headers={"X-CSRF-Token": csrf})
    assert answered.status == 400  # past the guards: the service says it is not a charger


async def test_every_answer_carries_the_security_headers(web: Web) -> None:
    browser, _ = await web.browser("admin")
    anonymous = web.client()
    answers = [
        await browser.get("/"),
        await browser.get("/api/states"),
        await browser.get("/api/states/nothing.here"),
        await browser.get("/static/app.js"),
        await browser.get("/no/such/page"),
        await anonymous.get("/login"),
        await anonymous.get("/api/states"),
    ]
    for answer in answers:
        headers = answer.headers
        assert headers["Content-Security-Policy"] == CSP, answer.url
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert answers[0].headers["Cache-Control"] == "no-store"


async def test_a_trusted_proxy_makes_cookies_secure_and_names_the_client(
    tmp_path: object, clock: object
) -> None:
    from tests.web.conftest import start_web

    w = await start_web(tmp_path, clock, trusted_proxies=["127.0.0.1/32"])  # type: ignore[arg-type]
    try:
        await w.user("ops", "operator")
        proxied = w.client(**{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        page = await proxied.get("/login")
        pre = page.cookies["evhub_pre"]
        assert pre["secure"]  # so the jar of this plain-http client will not send it back
        answer = await proxied.post(
            "/login",
            data={"name": "ops", "password": PASSWORD, "pre_token": pre.value},
            headers={"Cookie": f"evhub_pre={pre.value}"},
            allow_redirects=False,
        )
        assert answer.cookies["evhub_session"]["secure"]
        assert answer.headers["Strict-Transport-Security"]
        sessions = await w.server.auth.sessions_of((await w.server.auth.users())[0].id)
        assert sessions[0]["address"] == "203.0.113.9"
    finally:
        for s in w.sessions:
            await s.close()
        await w.hub.stop()


async def test_an_untrusted_client_cannot_claim_an_address_or_tls(web: Web) -> None:
    await web.user("ops", "operator")
    liar = web.client(**{"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https"})
    answer = await login(liar, "ops")
    assert not answer.cookies["evhub_session"]["secure"]
    sessions = await web.server.auth.sessions_of((await web.server.auth.users())[0].id)
    assert sessions[0]["address"] == "127.0.0.1"


async def test_no_password_token_or_cookie_reaches_the_log(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser, csrf = await web.browser("admin")
    await login(web.client(), "admin", "a wrong password!")
    created = await browser.post("/api/auth/tokens", json={"name": "ci"},
                                 headers={"X-CSRF-Token": csrf})  # fmt: skip
    token = (await created.json())["token"]
    cookie = browser.cookie_jar.filter_cookies(URL(web.url))["evhub_session"].value
    await web.hub.block_till_done()
    text = caplog.text
    for secret in (PASSWORD, "a wrong password!", token, cookie, csrf):
        assert secret not in text
    assert "login_failed" in text  # the event itself is logged, without the secret


async def test_an_admin_manages_users_and_a_removed_user_is_out_at_once(web: Web) -> None:
    admin, csrf = await web.browser("boss")
    viewer, _ = await web.browser("eve", "viewer")
    page = await (await admin.get("/users")).text()
    assert "eve" in page and csrf_of(page) == csrf
    eve = next(u for u in await web.server.auth.users() if u.name == "eve")
    made = await admin.post(f"/users/{eve.id}", data={"csrf_token": csrf, "action": "role",
                                                      "role": "operator"})  # fmt: skip
    assert made.status == 200
    assert (await viewer.get("/api/auth/me")).status == 401  # a role change ends sessions
    boss = next(u for u in await web.server.auth.users() if u.name == "boss")
    last = await admin.post(f"/users/{boss.id}", data={"csrf_token": csrf, "action": "delete"})
    assert "at least one enabled admin" in await last.text()
    assert (await viewer.get("/users", allow_redirects=False)).status == 303
