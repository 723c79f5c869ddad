"""Push the boards to a running Grafana over its HTTP API (grafana-client).

Idempotent: each dashboard is saved by its uid with `overwrite`, into a folder that is created
once (by uid) and reused. Failures are turned into one `PushError` with a message that says
what to fix (token, URL, permissions), never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PushError", "PushResult", "push_dashboards"]


class PushError(RuntimeError):
    """Pushing failed; the message is meant for the person at the terminal."""


@dataclass(frozen=True)
class PushResult:
    uid: str
    title: str
    url: str
    version: int | None


def _explain(exc: Exception, url: str) -> PushError:
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError

    status = getattr(exc, "status_code", 0)
    if isinstance(exc, GrafanaTimeoutError):
        return PushError(f"Grafana at {url} did not answer in time: {exc}")
    if isinstance(exc, GrafanaClientError) and status == 401:
        return PushError(f"Grafana at {url} rejected the credentials (401 Unauthorized): "
                         "check --token (a service account token, or user:password)")
    if isinstance(exc, GrafanaClientError) and status == 403:
        return PushError(f"Grafana at {url} refused the request (403 Forbidden): the token needs the "
                         "Editor role (dashboards:write, folders:create)")
    if isinstance(exc, GrafanaException) and status:
        return PushError(f"Grafana at {url} answered {status}: {getattr(exc, 'message', exc)}")
    return PushError(f"cannot connect to Grafana at {url}: {exc}")


def _credential(token: str) -> str | tuple[str, str]:
    """A bearer token, or `user:password` for basic auth (the stock admin on a fresh Grafana)."""
    if ":" in token and not token.startswith(("glsa_", "eyJ")):
        user, _, password = token.partition(":")
        return (user, password)
    return token


def _ensure_folder(api: Any, title: str, uid: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)


def push_dashboards(
    url: str,
    token: str,
    models: Iterable[Mapping[str, Any]],
    *,
    folder: str = "tenantwatch",
    folder_uid: str = "tenantwatch",
    timeout: float = 10.0,
) -> list[PushResult]:
    """Create or overwrite every dashboard in `models` (by uid) inside `folder`."""
    import niquests
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    if not url.startswith(("http://", "https://")):
        raise PushError(f"--url must start with http:// or https://, got {url!r}")
    results = []
    try:
        api = GrafanaApi.from_url(url, credential=_credential(token), timeout=timeout)
        _ensure_folder(api, folder, folder_uid)
        for model in models:
            body = {"dashboard": {**model, "id": None}, "folderUid": folder_uid, "overwrite": True,
                    "message": "tenantwatch dashboards push"}
            answer = api.dashboard.update_dashboard(body) or {}
            results.append(PushResult(uid=str(model["uid"]), title=str(model.get("title", "")),
                                      url=str(answer.get("url", "")), version=answer.get("version")))
    except (GrafanaException, niquests.exceptions.RequestException, OSError) as exc:
        raise _explain(exc, url) from exc
    return results
