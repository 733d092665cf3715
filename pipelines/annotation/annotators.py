"""Annotator accounts on Label Studio 1.23 without prompts.

What works on the open-source edition (tried against the real server): ``POST /api/users/``
creates a member but cannot set a password (the serializer has no password field), and the stack
closes open sign-up (``DISABLE_SIGNUP_WITHOUT_LINK=true``). The organisation's **invite link**
does both: an admin reads ``GET /api/invite`` and the account is created through
``POST /user/signup/?token=<invite token>`` (the same form a person would fill in) with the
email and a generated password; the new user joins the organisation. Over HTTP only, so it works
against a remote Label Studio too. The password is printed once and never stored.

label-studio-sdk 2.1.2 covers the API calls here (``users.list``, ``organizations.invites``) but not
the sign-up and login *forms* (a browser session with a CSRF cookie, no API token yet): those two
form posts are written here, once, with httpx.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

from pipelines.annotation.client import LabelStudioClient, LabelStudioError


class AccountError(LabelStudioError):
    """Label Studio refused a sign-up or a login (the message says which and why)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(status_code=status_code, body=message)

    def __str__(self) -> str:
        return str(self.body)


class AnnotatorExists(AccountError):
    """An account with this email already exists (its password is not touched)."""


@dataclass(frozen=True)
class AnnotatorAccount:
    email: str
    password: str
    login_url: str
    user_id: int | None = None

    def __repr__(self) -> str:
        return f"AnnotatorAccount(email={self.email!r}, login_url={self.login_url!r}, password='***')"

    def instructions(self, project_title: str = "HopChain verification") -> str:
        """What to tell the new annotator (contains the password: print it, never log it)."""
        return (
            f"Annotator account created.\n"
            f"  log in at : {self.login_url}\n"
            f"  email     : {self.email}\n"
            f"  password  : {self.password}   (shown once; change it under Account & Settings)\n"
            f"Open the project '{project_title}' and press 'Label All Tasks'. Guide: docs/annotators.md"
        )


def generate_password() -> str:
    """A password Django's validators accept (length, not numeric, not common)."""
    return "hc-" + secrets.token_urlsafe(15)


def _session(url: str) -> httpx.Client:
    return httpx.Client(base_url=url.rstrip("/"), timeout=30.0, follow_redirects=False)


def _form_post(http: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    """GET the form page (for the CSRF cookie), then POST the form as a browser would."""
    page = http.get(path)
    if page.status_code >= 400:
        raise AccountError(f"GET {path.split('?')[0]} -> HTTP {page.status_code}", page.status_code)
    csrf = http.cookies.get("csrftoken") or ""
    return http.post(
        path,
        data={**data, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{http.base_url}{path.split('?')[0]}", "X-CSRFToken": csrf},
    )


def add_annotator(admin: LabelStudioClient, email: str, password: str | None = None) -> AnnotatorAccount:
    """Create an annotator account (email + password) in the admin's organisation.

    Raises :class:`AnnotatorExists` when the email is taken, :class:`AccountError` when the
    sign-up is refused (the message carries Label Studio's form errors, e.g. a weak password).
    """
    email = email.strip().lower()
    if any(str(u.get("email", "")).lower() == email for u in admin.users()):
        raise AnnotatorExists(f"an account for {email} already exists", 409)
    password = password or generate_password()
    token = admin.invite_token()
    with _session(admin.url) as http:
        resp = _form_post(http, f"/user/signup/?token={token}", {"email": email, "password": password})
        if resp.status_code != 302:
            raise AccountError(
                f"sign-up of {email} refused (HTTP {resp.status_code}): {_form_errors(resp.text)}",
                resp.status_code,
            )
        me = http.get("/api/current-user/whoami")
        user_id = int(me.json()["id"]) if me.status_code == 200 else None
    return AnnotatorAccount(email, password, f"{admin.url}/user/login/", user_id)


def user_token(url: str, email: str, password: str) -> str:
    """Log in with the form and read the user's legacy API token (``GET /api/current-user/token``)."""
    with _session(url) as http:
        resp = _form_post(http, "/user/login/", {"email": email, "password": password})
        if resp.status_code != 302:
            raise AccountError(f"login of {email} refused (HTTP {resp.status_code})", resp.status_code)
        tok = http.get("/api/current-user/token")
        if tok.status_code != 200:
            raise AccountError(f"token of {email}: HTTP {tok.status_code}: {tok.text[:200]}", tok.status_code)
        return str(tok.json()["token"])


def _form_errors(html: str) -> str:
    import re

    errors = re.findall(r'class="[^"]*(?:error|field_errors)[^"]*"[^>]*>\s*([^<]{3,200})', html)
    return "; ".join(dict.fromkeys(e.strip() for e in errors)) or "no form error shown"
