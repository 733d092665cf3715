"""Label Studio through its SDK (``label-studio-sdk`` 2.1.2): the domain calls HopChain needs.

:class:`LabelStudioClient` is a thin wrapper around the SDK's sync ``LabelStudio`` client and
:class:`AsyncLabelStudioClient` around ``AsyncLabelStudio`` (the deferrable trigger). HTTP, auth,
pagination, retries and JSON decoding are the SDK's; the wrappers only choose the calls, turn the
SDK's typed records back into the plain JSON the pure functions read (exactly the fields the server
sent), and decide which calls may be retried. Failures are the SDK's
:class:`~label_studio_sdk.core.api_error.ApiError` (``status_code``, ``body``); connection failures
stay ``httpx`` errors.

Authentication: the SDK sends a legacy API token as ``Authorization: Token <token>`` (a JWT
personal access token as ``Bearer`` after refreshing it itself); the local stack enables legacy
tokens (``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true``). Clients are cheap to build and connect
lazily; neither ``repr`` nor the SDK's (silent, header-redacting) logger shows the token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import httpx
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.core.request_options import RequestOptions

from pipelines.annotation.completion import tasks_query

if TYPE_CHECKING:
    from label_studio_sdk import AsyncLabelStudio, LabelStudio

log = logging.getLogger(__name__)

# Every failure of a Label Studio call is the SDK's error type (also for the few calls we write).
LabelStudioError = ApiError


@dataclass(frozen=True)
class LabelStudioCredentials:
    """Base URL (``http://127.0.0.1:8081``) and legacy token. ``repr`` never shows the token."""

    url: str
    token: str

    def __repr__(self) -> str:
        return f"LabelStudioCredentials(url={self.url!r}, token='***')"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> LabelStudioCredentials:
        """From ``{"url", "token"}`` (the stack's credentials file / the test fixture)."""
        return cls(str(data["url"]).rstrip("/"), str(data["token"]))


@dataclass(frozen=True)
class ImportedTasks:
    """What one import created: ``count`` tasks, and their ids when the server says them (the Community
    edition's synchronous import does; an asynchronous one, ``{"import": id}``, does not: ``None``)."""

    count: int
    task_ids: tuple[int, ...] | None = None


def as_json(record: Any) -> dict[str, Any]:
    """An SDK record → the JSON object the server sent (unset fields left out, wire names kept)."""
    if isinstance(record, dict):
        return record
    return record.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _timeout(timeout_s: float, connect_cap_s: float) -> httpx.Timeout:
    return httpx.Timeout(timeout_s, connect=min(connect_cap_s, timeout_s))


class LabelStudioClient:
    """Synchronous Label Studio client (the SDK's ``LabelStudio``). Use as a context manager or
    call :meth:`close`.

    ``retries``: failed connections are retried for every call (the request never reached the
    server); reads (GET) are also retried on 5xx/429 with the SDK's backoff. Writes are never
    retried on an answer, so an import that failed half-way is not sent twice by us.
    ``transport`` replaces the network (tests).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self._transport = transport
        self._http: httpx.Client | None = None
        self._sdk: LabelStudio | None = None

    @property
    def token(self) -> str:
        return self._token

    @classmethod
    def from_credentials(cls, creds: LabelStudioCredentials, **kw: Any) -> LabelStudioClient:
        return cls(creds.url, creds.token, **kw)

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = self._sdk = None

    @property
    def sdk(self) -> LabelStudio:
        """The SDK client (built on first use; for calls this wrapper does not name)."""
        if self._sdk is None:
            from label_studio_sdk import LabelStudio

            self._http = httpx.Client(
                timeout=_timeout(self.timeout_s, 10.0),
                transport=self._transport or httpx.HTTPTransport(retries=self.retries),  # connect failures
                follow_redirects=True,
            )
            # max_retries=0: the SDK would retry every method on 5xx; reads opt in per call (_read).
            self._sdk = LabelStudio(
                base_url=self.url, api_key=self._token, httpx_client=self._http, max_retries=0
            )
        return self._sdk

    @property
    def _read(self) -> RequestOptions:
        return {"max_retries": self.retries}

    # -- users ----------------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        return as_json(self.sdk.users.whoami(request_options=self._read))

    def users(self) -> list[dict[str, Any]]:
        """Members of the caller's organisation."""
        return [as_json(u) for u in self.sdk.users.list(request_options=self._read)]

    def invite_token(self) -> str:
        """The organisation's invite token (what ``/user/signup/?token=...`` needs)."""
        return str(self.sdk.organizations.invites.get_invite_link(request_options=self._read).token)

    # -- projects -------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title (lowest id if several), or None.

        (The server's ``title`` filter matches substrings, case-insensitively.)
        """
        pager: Iterable[Any] = self.sdk.projects.list(title=title, page_size=100, request_options=self._read)
        found = [p for p in map(as_json, pager) if p.get("title") == title]
        return min(found, key=lambda p: int(p["id"])) if found else None

    def get_project(self, project_id: int) -> dict[str, Any]:
        return as_json(self.sdk.projects.get(project_id, request_options=self._read))

    def create_project(self, payload: dict[str, Any]) -> dict[str, Any]:
        return as_json(self.sdk.projects.create(**payload))

    def update_project(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return as_json(self.sdk.projects.update(project_id, **payload))

    def delete_project(self, project_id: int) -> None:
        self.sdk.projects.delete(project_id)

    # -- webhooks -------------------------------------------------------------------------------
    def webhooks(self, project_id: int | None) -> list[dict[str, Any]]:
        """The webhooks of project ``project_id``, or (``None``) every webhook of the caller's
        organisation: those of every project and the organisation-wide ones (``project`` null)."""
        hooks = self.sdk.webhooks.list(project=None if project_id is None else str(int(project_id)),
                                       request_options=self._read)
        return [as_json(h) for h in hooks]

    def delete_webhook(self, webhook_id: int) -> None:
        self.sdk.webhooks.delete(int(webhook_id))

    # -- storages -------------------------------------------------------------------------------
    def s3_import_storages(self, project_id: int) -> list[dict[str, Any]]:
        """The project's S3 source storages (the secret key is never returned by the server)."""
        return [as_json(s) for s in self.sdk.import_storage.s3.list(project=int(project_id),
                                                                    request_options=self._read)]

    def create_s3_import_storage(self, project_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        return as_json(self.sdk.import_storage.s3.create(project=int(project_id), **settings))

    def update_s3_import_storage(self, storage_id: int, settings: dict[str, Any]) -> dict[str, Any]:
        return as_json(self.sdk.import_storage.s3.update(int(storage_id), **settings))

    # -- tasks ----------------------------------------------------------------------------------
    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> ImportedTasks:
        """Import ``tasks`` (``[{"data": {...}}, ...]``) in ONE request; returns how many were created and
        their ids (``return_task_ids``: the push records the lowest on its batch, see
        :attr:`pipelines.store.ledger.BatchRecord.first_task_id`)."""
        resp = self.sdk.projects.import_tasks(project_id, request=tasks,  # type: ignore[arg-type]  # plain dicts are what the API takes
                                              return_task_ids=True)
        ids = as_json(resp).get("task_ids")
        count = int(resp.task_count if resp.task_count is not None else len(tasks))
        return ImportedTasks(count, tuple(int(i) for i in ids) if isinstance(ids, list) else None)

    def iter_tasks(
        self,
        project_id: int,
        batch: str | None = None,
        fields: str = "all",
        page_size: int = 500,
        query: str | None = None,
        first_task_id: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every task of the project (optionally of one ``batch``, or matching a Data Manager ``query``),
        page by page (the SDK's pager). ``first_task_id``: the batch's id bound
        (:func:`pipelines.annotation.completion.batch_filter`; ``None`` reads the batch unbounded).

        With ``fields="all"`` each task carries its annotations, cancelled ones included.
        """
        pager: Iterable[Any] = self.sdk.tasks.list(
            **tasks_query(project_id, batch, fields, page_size, query, first_task_id), request_options=self._read
        )
        for task in pager:
            yield as_json(task)

    def get_task(self, task_id: int) -> dict[str, Any]:
        return as_json(self.sdk.tasks.get(str(task_id), request_options=self._read))

    def set_task_overlap(self, task_id: int, overlap: int, is_labeled: bool) -> dict[str, Any]:
        """``PATCH /api/tasks/<id>`` with ``overlap`` and ``is_labeled`` (:mod:`pipelines.annotation.handout`):
        ``overlap`` = its annotators and ``is_labeled`` takes a task out of the ``/next`` stream (early
        stop); ``overlap`` = annotators + 1 and not ``is_labeled`` opens it to one more annotator. Its
        annotations stay; annotators who hold it open can still submit. Idempotent."""
        return as_json(self.sdk.tasks.update(str(int(task_id)), overlap=max(1, int(overlap)),
                                             is_labeled=bool(is_labeled)))

    def next_task(self, project_id: int) -> dict[str, Any] | None:
        """The next task the labeling stream gives the caller, or None when it has none left."""
        # label-studio-sdk 2.1.2 has no call for GET /api/projects/{id}/next (the labeling stream the
        # UI's "Label All Tasks" uses, which honours maximum_annotations and overlap): sent through
        # the SDK's own HTTP client, so auth, base URL and retries stay the SDK's.
        resp = self.sdk._client_wrapper.httpx_client.request(
            f"api/projects/{int(project_id)}/next", method="GET", request_options=self._read
        )
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise ApiError(status_code=resp.status_code, headers=dict(resp.headers), body=resp.text[:300])
        return dict(resp.json())

    # -- annotations ----------------------------------------------------------------------------
    def create_annotation(
        self,
        task_id: int,
        result: list[dict[str, Any]],
        lead_time_s: float | None = None,
        was_cancelled: bool = False,
    ) -> dict[str, Any]:
        """Submit an annotation as the token's user (Label Studio validates almost nothing)."""
        kw: dict[str, Any] = {} if lead_time_s is None else {"lead_time": lead_time_s}
        return as_json(self.sdk.annotations.create(task_id, result=result, was_cancelled=was_cancelled, **kw))


class AsyncLabelStudioClient:
    """Asynchronous Label Studio client (the SDK's ``AsyncLabelStudio``) for the triggerer's loop.

    No retries at all: the caller polls again later. Use ``async with`` or :meth:`aclose`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = float(timeout_s)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._sdk: AsyncLabelStudio | None = None

    @classmethod
    def from_credentials(cls, creds: LabelStudioCredentials, **kw: Any) -> AsyncLabelStudioClient:
        return cls(creds.url, creds.token, **kw)

    def __repr__(self) -> str:
        return f"AsyncLabelStudioClient({self.url})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._http = self._sdk = None

    @property
    def sdk(self) -> AsyncLabelStudio:
        if self._sdk is None:
            from label_studio_sdk import AsyncLabelStudio

            self._http = httpx.AsyncClient(
                timeout=_timeout(self.timeout_s, 5.0), transport=self._transport, follow_redirects=True
            )
            self._sdk = AsyncLabelStudio(
                base_url=self.url, api_key=self._token, httpx_client=self._http, max_retries=0
            )
        return self._sdk

    async def iter_tasks(
        self, project_id: int, batch: str | None = None, fields: str = "all", page_size: int = 500,
        query: str | None = None, first_task_id: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Like :meth:`LabelStudioClient.iter_tasks`, asynchronously (the same query)."""
        pager = await self.sdk.tasks.list(**tasks_query(project_id, batch, fields, page_size, query, first_task_id))
        async for task in pager:
            yield as_json(task)

    async def get_project(self, project_id: int) -> dict[str, Any]:
        """Like :meth:`LabelStudioClient.get_project`, asynchronously (the trigger's project guard)."""
        return as_json(await self.sdk.projects.get(int(project_id)))

    async def webhooks(self, project_id: int | None) -> list[dict[str, Any]]:
        """Like :meth:`LabelStudioClient.webhooks`, asynchronously (the trigger's project guard)."""
        hooks = await self.sdk.webhooks.list(project=None if project_id is None else str(int(project_id)))
        return [as_json(h) for h in hooks]

    async def set_task_overlap(self, task_id: int, overlap: int, is_labeled: bool) -> dict[str, Any]:
        """Like :meth:`LabelStudioClient.set_task_overlap`, asynchronously (for async callers; the annotation
        wait's trigger never changes a task)."""
        return as_json(await self.sdk.tasks.update(str(int(task_id)), overlap=max(1, int(overlap)),
                                                   is_labeled=bool(is_labeled)))


def base_url_from_parts(host: str, port: int | None = None, schema: str | None = None) -> str:
    """Connection parts → base URL: ``("http://127.0.0.1", 8081)`` → ``http://127.0.0.1:8081``.

    ``host`` may carry the scheme (``https://ls.example.org``); otherwise ``schema`` or ``http``.
    A path on ``host`` (Label Studio behind a prefix) is kept.
    """
    host = (host or "").strip().rstrip("/")
    if not host:
        raise ValueError("Label Studio connection has no host")
    if "://" not in host:
        host = f"{schema or 'http'}://{host}"
    scheme, rest = host.split("://", 1)
    netloc, slash, path = rest.partition("/")
    if port and ":" not in netloc:
        netloc = f"{netloc}:{int(port)}"
    return f"{scheme}://{netloc}{slash}{path}".rstrip("/")
