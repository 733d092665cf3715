"""The registered annotators: the accounts whose answers count, kept by the deployment.

Label Studio Community Edition has no roles: every account of the organisation can annotate, and the
platform's own account is an account like any other. So "four different people gave this answer"
needs a list the platform keeps itself, outside Label Studio: one JSON document in the object store
(``<annotators_prefix>/registry.json``), written only with the platform's key (annotators never hold
it) through ``hopchain annotators add | register | unregister | list``.

* An entry is keyed by the Label Studio **user id** (an account's email can be changed by its owner,
  its id cannot), with the email at registration, the ``kind`` (``person``, or ``simulated`` for the
  demo's stand-ins) and when it was registered.
* The platform's own accounts (the token the platform works with) never count, registered or not:
  :meth:`AnnotatorRegistry.register` refuses them and :func:`~pipelines.annotation.integrity.check`
  ignores any entry for them.
* Unregistering keeps the entry with ``active: false`` (what was counted before stays explained).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Kind = Literal["person", "simulated"]
PERSON: Kind = "person"
SIMULATED: Kind = "simulated"


class RegistryError(ValueError):
    """A registration the registry refuses (the platform's own account, a bad id)."""


class Annotator(BaseModel):
    user_id: int = Field(ge=1)
    email: str
    kind: Kind = PERSON
    active: bool = True
    registered_at: datetime


class AnnotatorRegistry(BaseModel):
    """The registered annotators (see the module doc). Pure data; :func:`load` / :func:`save` store it."""

    annotators: list[Annotator] = Field(default_factory=list)

    def _by_id(self) -> dict[int, Annotator]:
        return {a.user_id: a for a in self.annotators}

    def kind_of(self, user_id: int | None, platform: Iterable[int] = ()) -> Kind | None:
        """``person`` / ``simulated`` for an active registered account, else None (not counted)."""
        if user_id is None or user_id in set(platform):
            return None
        entry = self._by_id().get(int(user_id))
        return entry.kind if entry is not None and entry.active else None

    def register(self, user_id: int, email: str, kind: Kind = PERSON, platform: Iterable[int] = ()) -> bool:
        """Add (or re-activate) an account; True when something changed. Refuses a platform account."""
        if int(user_id) in set(platform):
            raise RegistryError(f"user {user_id} ({email}) is the platform's own account: its answers never count")
        entry = self._by_id().get(int(user_id))
        if entry is not None and entry.active and entry.kind == kind:
            return False
        others = [a for a in self.annotators if a.user_id != int(user_id)]
        self.annotators = [*others, Annotator(user_id=int(user_id), email=email, kind=kind,
                                              registered_at=datetime.now(UTC))]
        self.annotators.sort(key=lambda a: a.user_id)
        return True

    def unregister(self, user_id: int) -> bool:
        entry = self._by_id().get(int(user_id))
        if entry is None or not entry.active:
            return False
        entry.active = False
        return True

    def active(self) -> list[Annotator]:
        return [a for a in self.annotators if a.active]


def load(store: Any, key: str) -> AnnotatorRegistry:
    """The registry at ``key`` (an empty one when none was written yet)."""
    if not store.exists(key):
        return AnnotatorRegistry()
    return AnnotatorRegistry.model_validate(json.loads(store.get_bytes(key)))


def save(store: Any, key: str, registry: AnnotatorRegistry) -> None:
    store.put_json(key, registry.model_dump(mode="json"))


PSEUDONYM_ENV = "HOPCHAIN_PSEUDONYM_KEY"


def pseudonymizer(key: bytes) -> Callable[[int | None], str]:
    """Label Studio user id → ``a-<16 hex>``: HMAC-SHA256 of the account under the deployment's key, so
    the same person has the same pseudonym in every release, and nobody without the key can tell who
    (user ids are small integers: an unkeyed hash would be reversed by trying them all)."""

    def pseudonym(user_id: int | None) -> str:
        if user_id is None:
            return "a-unknown"
        return "a-" + hmac.new(key, f"label-studio-user:{int(user_id)}".encode(), hashlib.sha256).hexdigest()[:16]

    return pseudonym


def pseudonym_key(store: Any, key: str) -> bytes:
    """The deployment's pseudonym key: ``HOPCHAIN_PSEUDONYM_KEY``, else one generated once and kept in the
    platform bucket at ``key`` (readable by whoever can read the bucket: set the variable in production)."""
    env = os.environ.get(PSEUDONYM_ENV, "")
    if env:
        return env.encode()
    if store.exists(key):
        return store.get_bytes(key).strip()
    fresh = secrets.token_hex(32).encode()
    store.put_bytes(key, fresh, "text/plain")
    return fresh
