"""OpenAI-style Kling gateway: /v1/video/generations, /v1/videos/{id}, in five response shapes."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from aiohttp import web

from tests.fakes.vendors.base import FakeTask, FakeVendor, Handler, _json_body


KlingShape = Literal["openai", "envelope", "envelope_legacy", "simple", "native"]
ProgressStyle = Literal["linear", "stages"]
# new-api's figure per stage, whatever the time left: submitted 10%, queued 20%, in progress 30%.
_STAGE_PERCENT = (10, 20, 30)

# (running statuses walked through, success, failure) per response shape.
_KLING_STATUSES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "openai": (("queued", "in_progress"), "completed", "failed"),
    "envelope": (("NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS"), "SUCCESS", "FAILURE"),
    "envelope_legacy": (("SUBMITTED", "IN_PROGRESS"), "SUCCESS", "FAILURE"),
    "simple": (("queued", "processing"), "succeeded", "failed"),
    "native": (("submitted", "processing"), "succeed", "failed"),
}


class FakeKlingVendor(FakeVendor):
    """The OpenAI-style video gateway serving Kling v3.

    Knobs: `shape` (openai | envelope | envelope_legacy (URL in fail_reason on SUCCESS) | simple |
    native) for create and poll answers; `serve_paths` (which poll paths exist: "videos" =
    /v1/videos/{id}, "generations" = /v1/video/generations/{id}; the other answers 404);
    `progress` ("linear": the share of the run done, truncated to whole percents; "stages": new-api's
    fixed figure per stage, 10% / 20% / 30% until done); `new_api` (as new-api's source answers: an
    unknown task is HTTP 400 `{"code": "task_not_exist", ...}`, and /v1/video/generations/{id} answers
    in the gateway envelope with `fail_reason`, whatever `shape` /v1/videos/{id} uses);
    `bare_video_failures` (older new-api: /v1/videos/{id} reports a failed task with no error at all).
    """

    vendor = "kling"

    def __init__(
        self,
        *,
        shape: KlingShape = "openai",
        serve_paths: frozenset[str] = frozenset({"videos", "generations"}),
        progress: ProgressStyle = "linear",
        new_api: bool = False,
        bare_video_failures: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shape: KlingShape = shape
        self.serve_paths = serve_paths
        self.progress: ProgressStyle = progress
        self.new_api = new_api
        self.bare_video_failures = bare_video_failures

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/v1/video/generations", self._create, "create"),
            ("GET", "/v1/videos/{task_id}", self._query_videos, "query"),
            ("GET", "/v1/video/generations/{task_id}", self._query_generations, "query"),
        ]

    async def _create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        extra = body.get("extra_body") if body and isinstance(body.get("extra_body"), dict) else {}
        if body is None or not body.get("model") or not (body.get("prompt") or extra.get("multi_prompt")):
            return web.json_response({"error": {"message": "model and prompt (or multi_prompt) are required",
                                                "type": "invalid_request_error", "code": "invalid_request"}},
                                     status=400)
        task = self.new_task(f"task_{secrets.token_hex(10)}", body)
        created = int(task.created_at)
        if self.shape == "openai":
            answer: dict[str, Any] = {"id": task.id, "object": "video", "model": body["model"], "status": "queued",
                                      "progress": 0, "created_at": created}
        elif self.shape in ("envelope", "envelope_legacy"):
            answer = {"code": "success", "message": "", "data": {"task_id": task.id}}
        elif self.shape == "simple":
            answer = {"task_id": task.id, "status": "queued"}
        else:
            answer = {"code": 0, "message": "SUCCEED", "request_id": secrets.token_hex(6),
                      "data": {"task_id": task.id, "task_status": "submitted", "created_at": created * 1000}}
        return web.json_response(answer)

    async def _query_videos(self, request: web.Request) -> web.Response:
        return self._query("videos", request.match_info["task_id"])

    async def _query_generations(self, request: web.Request) -> web.Response:
        return self._query("generations", request.match_info["task_id"])

    def _query(self, path: str, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if path in self.serve_paths and task is None and self.new_api:
            return web.json_response({"code": "task_not_exist", "message": "task_not_exist", "data": None},
                                     status=400)
        if path not in self.serve_paths or task is None:
            return web.json_response({"error": {"message": "not found", "type": "not_found"}}, status=404)
        task.status_calls += 1
        if path == "generations" and self.new_api:
            return web.json_response(self.task_answer(task, "envelope"))
        answer = self.task_answer(task)
        if path == "videos" and self.bare_video_failures:
            answer.pop("error", None)
        return web.json_response(answer)

    def task_answer(self, task: FakeTask, shape: KlingShape | None = None) -> dict[str, Any]:
        """The poll answer in the configured shape (or `shape`)."""
        now = self.clock.now()
        shape = shape or self.shape
        running, success, failure = _KLING_STATUSES[shape]
        done = task.done(now)
        stage = min(len(running) - 1, int(task.fraction(now) * len(running)))
        if not done:
            status = running[stage]
        else:
            status = success if task.outcome.success else failure
        ok = done and task.outcome.success
        url = self.video_url(task) if ok else None
        reason = task.outcome.reason if done and not task.outcome.success else ""
        code = task.outcome.code or "generation_failed"
        percent = int(task.fraction(now) * 100)
        if self.progress == "stages":
            percent = 100 if done else _STAGE_PERCENT[-1] if stage == len(running) - 1 else _STAGE_PERCENT[min(stage, 1)]
        if shape == "openai":
            answer: dict[str, Any] = {"id": task.id, "object": "video", "status": status, "progress": percent}
            if url:
                answer["metadata"] = {"url": url}
            if reason:
                answer["error"] = {"code": code, "message": reason}
            return answer
        if shape in ("envelope", "envelope_legacy"):
            data: dict[str, Any] = {"task_id": task.id, "status": status, "progress": f"{percent}%",
                                    "fail_reason": reason}
            if url and shape == "envelope":
                data["result_url"] = url
            elif url:
                data["fail_reason"] = url  # old gateway versions
            return {"code": "success", "message": "", "data": data}
        if shape == "simple":
            answer = {"task_id": task.id, "status": status, "url": url}
            if reason:
                answer["error"] = {"code": code, "message": reason}
            return answer
        data = {"task_id": task.id, "task_status": status, "task_status_msg": reason,
                "task_result": {"videos": [{"id": "v1", "url": url, "duration": "5"}] if url else []}}
        return {"code": 0, "message": "SUCCEED", "data": data}
