"""Unified API (kkiai): /v1/video/create + /v1/video/query."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tests.fakes.vendors.base import FakeVendor, Handler, _json_body


class FakeUnifiedVendor(FakeVendor):
    """kkiai's unified API for Veo and Sora 2.

    Knobs: `running_statuses` (walked through over the task's duration), `success_status`,
    `failure_status`, `stale_error_text` (completed answers carry leftover error text, as in the
    vendor's own example), `echo_id_without_prefix` (the query echoes the id minus its model prefix),
    `upsampling_fails` (a 1080p task ends `video_upsampling_failed`, its 720p video in `detail.video_url`).
    The query only knows the full id (prefix included), as the client must send it.
    """

    vendor = "kkiai"

    def __init__(
        self,
        *,
        running_statuses: tuple[str, ...] = ("pending", "processing", "video_generating"),
        success_status: str = "completed",
        failure_status: str = "failed",
        stale_error_text: bool = True,
        echo_id_without_prefix: bool = True,
        upsampling_fails: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.running_statuses = running_statuses
        self.success_status = success_status
        self.failure_status = failure_status
        self.stale_error_text = stale_error_text
        self.echo_id_without_prefix = echo_id_without_prefix
        self.upsampling_fails = upsampling_fails

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/v1/video/create", self._create, "create"),
            ("GET", "/v1/video/query", self._query, "query"),
        ]

    async def _create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not body.get("model") or not body.get("prompt"):
            return web.json_response(
                {"error": {"message": "model and prompt are required", "type": "invalid_request_error"}}, status=400
            )
        now = self.clock.now()
        task_id = f"{body['model']}:{int(now)}-{secrets.token_urlsafe(8)}"
        self.new_task(task_id, body)
        return web.json_response({"id": task_id, "status": "pending", "status_update_time": int(now * 1000)})

    async def _query(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("id", ""))
        if task is None:
            return web.json_response({"error": {"message": "task not found", "type": "not_found"}}, status=404)
        task.status_calls += 1
        now = self.clock.now()
        echoed = task.id.split(":", 1)[-1] if self.echo_id_without_prefix else task.id
        detail: dict[str, Any] = {"id": task.id, "req": task.body, "created_at": int(task.created_at * 1000)}
        changed = task.finishes_at if task.done(now) else now  # a finished task's status last changed then
        payload: dict[str, Any] = {"id": echoed, "video_url": None, "status_update_time": int(changed * 1000),
                                   "detail": detail}
        if not task.done(now):
            statuses = self.running_statuses or ("processing",)
            status = statuses[min(len(statuses) - 1, int(task.fraction(now) * len(statuses)))]
            detail.update(status=status, running=True)
        elif task.outcome.success:
            status = self.success_status
            plain = self.video_url(task)
            detail.update(status=status, running=False, video_url=plain, completed_at=int(task.finishes_at * 1000))
            payload["video_url"] = plain
            if task.body.get("enable_upsample") and self.upsampling_fails:
                status = "video_upsampling_failed"
                payload["video_url"] = None
                detail.update(status=status, error_message="upsample failed: upstream 1080p job error")
            elif task.body.get("enable_upsample"):
                upsampled = self.video_url(task, "-1080p")
                detail["upsample_video_url"] = upsampled
                payload["video_url"] = upsampled
            if self.stale_error_text:
                detail["error_message"] = "[403] Request failed with status code 403 | reCAPTCHA evaluation failed"
                detail["video_generation_error"] = "your request contains unsafe prompt or images, has been rejected"
        else:
            status = self.failure_status
            detail.update(status=status, running=False, video_generation_error=task.outcome.reason,
                          error_message=task.outcome.reason)
        payload["status"] = status
        return web.json_response(payload)
