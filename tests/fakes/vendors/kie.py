"""kie.ai Veo 3.1: generate, record-info, 1080p, 4K, extend, file upload, signed completion callbacks.

Shaped after kie.ai's pages: `POST /api/v1/veo/extend {taskId, prompt, ...}` answers
`{code: 200, data: {taskId}}` with a new task polled with record-info; `POST /api/v1/veo/get-4k-video
{taskId, index, callBackUrl}` answers `{code: 200, data: {taskId, resultUrls: null, imageUrls: null}}`,
asked again while the 4K file is being made `{code: 422, msg: "4k is processing. It should be ready in
5-10 minutes. ..."}`, and once ready `data.resultUrls`; its callback is `{code: 200, msg: "4K Video
generated successfully.", data: {taskId (the source's), info: {resultUrls, imageUrls}}}`, or code 500
"The 4K version of this video is unavailable..." on failure.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.vendors.base import FakeTask, FakeVendor, Handler, _json_body


@dataclass
class UploadRecord:
    upload_path: str
    file_name: str
    content_type: str
    data: bytes


@dataclass
class UhdPass:
    """A 4K pass asked for one task."""

    started_at: float
    callback_url: str | None
    requests: int = 1
    callback_sent: bool = False


@dataclass
class CallbackRecord:
    task_id: str
    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None  # the receiver's HTTP status; None if it could not be reached
    error: str = ""


class FakeKieVendor(FakeVendor):
    """kie.ai's Veo 3.1 API, its file host (serve both from one fake: set kie_upload_base_url to
    the same base_url) and its completion callbacks.

    Knobs: `result_urls_as_string` (record-info's resultUrls as a JSON string), `hd_delay` (seconds
    after completion before 1080p is ready; None = never), `uhd_delay` (seconds after the first 4K
    request before the 4K file is ready; None = never), `uhd_unavailable` (4K answers kie's 500
    "unavailable"), `failure_flag` (2 or 3),
    `callback_key` (sign callbacks with HMAC), `auto_callbacks` (default: on with the wall clock,
    off with an injected clock - then call `await fire_due_callbacks()`).
    """

    vendor = "kie"

    def __init__(
        self,
        *,
        result_urls_as_string: bool = False,
        hd_delay: float | None = 60.0,
        uhd_delay: float | None = 420.0,
        uhd_unavailable: bool = False,
        failure_flag: int = 2,
        callback_key: str | None = None,
        auto_callbacks: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result_urls_as_string = result_urls_as_string
        self.hd_delay = hd_delay
        self.uhd_delay = uhd_delay
        self.uhd_unavailable = uhd_unavailable
        self.uhd: dict[str, UhdPass] = {}  # source task id -> its 4K pass
        self.failure_flag = failure_flag
        self.callback_key = callback_key
        self.auto_callbacks = self.uses_wall_clock if auto_callbacks is None else auto_callbacks
        self.uploads: list[UploadRecord] = []
        self.callbacks: list[CallbackRecord] = []
        self._callback_loop: asyncio.Task[None] | None = None
        self._callback_http: httpx.AsyncClient | None = None

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/api/v1/veo/generate", self._generate, "create"),
            ("GET", "/api/v1/veo/record-info", self._record_info, "query"),
            ("GET", "/api/v1/veo/get-1080p-video", self._get_1080p, "1080p"),
            ("POST", "/api/v1/veo/get-4k-video", self._get_4k, "4k"),
            ("POST", "/api/v1/veo/extend", self._extend, "extend"),
            ("POST", "/api/file-stream-upload", self._upload, "upload"),
            ("GET", "/files/{path:.*}", self._serve_file, "files"),
        ]

    def auth_error(self) -> web.Response:
        return web.json_response({"code": 401, "msg": "You do not have access permissions", "data": None},
                                 status=401)

    async def on_started(self) -> None:
        if self._callback_http is None:
            self._callback_http = httpx.AsyncClient(timeout=5.0)
        if self.auto_callbacks and self._callback_loop is None:
            self._callback_loop = asyncio.create_task(self._fire_callbacks_forever())

    async def on_stopping(self) -> None:
        if self._callback_loop is not None:
            self._callback_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._callback_loop
            self._callback_loop = None
        if self._callback_http is not None:
            await self._callback_http.aclose()
            self._callback_http = None

    # --- generate / record-info / 1080p -------------------------------------------------------------
    async def _generate(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not str(body.get("prompt") or "").strip():
            return web.json_response({"code": 422, "msg": "prompt is required", "data": None})
        task = self.new_task(f"veo_task_{secrets.token_hex(8)}", body)
        task.callback_url = body.get("callBackUrl") or None
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})

    def _urls(self, task: FakeTask) -> list[str]:
        return [self.video_url(task)]

    async def _record_info(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found", "data": None})
        task.status_calls += 1
        now = self.clock.now()
        done = task.done(now)
        data: dict[str, Any] = {
            "taskId": task.id, "paramJson": json.dumps(task.body), "createTime": int(task.created_at * 1000),
            "completeTime": int(task.finishes_at * 1000) if done else None, "response": None,
            "successFlag": 0, "errorCode": None, "errorMessage": None, "fallbackFlag": False,
        }
        if done and task.outcome.success:
            urls = self._urls(task)
            data["successFlag"] = 1
            data["response"] = {
                "taskId": task.id, "resolution": "720p",
                "resultUrls": json.dumps(urls) if self.result_urls_as_string else urls,
                "originUrls": None,
            }
        elif done:
            data.update(successFlag=self.failure_flag, errorCode=task.outcome.code or 501,
                        errorMessage=task.outcome.reason)
        return web.json_response({"code": 200, "msg": "success", "data": data})

    async def _get_1080p(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found", "data": None})
        task.hd_calls += 1
        now = self.clock.now()
        if task.done(now) and not task.outcome.success:
            return web.json_response({"code": 501, "msg": "generation failed", "data": None})
        ready = self.hd_delay is not None and task.done(now) and now >= task.finishes_at + self.hd_delay
        if not ready:
            return web.json_response(
                {"code": 400, "msg": "1080P is processing. It should be ready in 1-2 minutes.", "data": None})
        return web.json_response({"code": 200, "msg": "success",
                                  "data": {"resultUrl": self.video_url(task, "-1080p")}})

    def _finished_source(self, task_id: str) -> FakeTask | web.Response:
        """The source task of a follow-up, or kie's answer when it has none to offer."""
        task = self.tasks.get(task_id)
        if task is None:
            return web.json_response({"code": 422, "msg": "record is null", "data": None})
        if not (task.done(self.clock.now()) and task.outcome.success):
            return web.json_response({"code": 400, "msg": "The original video has not been generated successfully",
                                      "data": None})
        return task

    async def _extend(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not str(body.get("prompt") or "").strip() or not body.get("taskId"):
            return web.json_response({"code": 422, "msg": "taskId and prompt are required", "data": None})
        source = self._finished_source(str(body["taskId"]))
        if isinstance(source, web.Response):
            return source
        task = self.new_task(f"veo_extend_task_{secrets.token_hex(8)}", body)
        task.callback_url = body.get("callBackUrl") or None
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})

    async def _get_4k(self, request: web.Request) -> web.Response:
        body = await _json_body(request) or {}
        task_id = str(body.get("taskId") or "")
        source = self._finished_source(task_id)
        if isinstance(source, web.Response):
            return source
        if self.uhd_unavailable:
            return web.json_response({"code": 500, "msg": "The 4K version of this video is unavailable. "
                                      "Please try a different video.", "data": None})
        data: dict[str, Any] = {"taskId": task_id, "resultUrls": None, "imageUrls": None}
        uhd = self.uhd.get(task_id)
        if uhd is None:
            self.uhd[task_id] = UhdPass(self.clock.now(), body.get("callBackUrl") or None)
            return web.json_response({"code": 200, "msg": "success", "data": data})
        uhd.requests += 1
        if not self._uhd_ready(uhd):
            return web.json_response({"code": 422, "msg": "4k is processing. It should be ready in 5-10 minutes. "
                                      "Please check back shortly.", "data": data})
        data["resultUrls"] = [self.video_url(source, "-4k")]
        return web.json_response({"code": 200, "msg": "success", "data": data})

    def _uhd_ready(self, uhd: UhdPass) -> bool:
        return self.uhd_delay is not None and self.clock.now() >= uhd.started_at + self.uhd_delay

    # --- file host -------------------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        file = form.get("file")
        if not isinstance(file, web.FileField):
            return web.json_response({"success": False, "code": 400, "msg": "file is required", "data": None})
        content = file.file.read()
        upload_path = str(form.get("uploadPath") or "uploads")
        file_name = str(form.get("fileName") or file.filename)
        self.uploads.append(UploadRecord(upload_path, file_name, file.content_type, content))
        url = f"{self.base_url}/files/{upload_path}/{file_name}"
        return web.json_response({"success": True, "code": 200, "msg": "File uploaded successfully", "data": {
            "fileName": file_name, "filePath": f"{upload_path}/{file_name}", "downloadUrl": url,
            "fileSize": len(content), "mimeType": file.content_type, "uploadedAt": int(self.clock.now() * 1000),
        }})

    async def _serve_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        for upload in reversed(self.uploads):
            if f"{upload.upload_path}/{upload.file_name}" == path:
                return web.Response(body=upload.data, content_type=upload.content_type)
        return web.Response(status=404)

    # --- callbacks ---------------------------------------------------------------------------------------
    def callback_payload(self, task: FakeTask) -> dict[str, Any]:
        """The documented callback JSON (URLs under data.info)."""
        if task.outcome.success:
            return {"code": 200, "msg": "Veo3.1 video generated successfully.", "data": {
                "taskId": task.id, "fallbackFlag": False,
                "info": {"resultUrls": self._urls(task), "originUrls": None, "resolution": "720p"},
            }}
        return {"code": task.outcome.code or 501, "msg": task.outcome.reason or "generation failed",
                "data": {"taskId": task.id, "fallbackFlag": False, "info": None}}

    def sign(self, task_id: str, timestamp: str) -> str:
        assert self.callback_key is not None
        digest = hmac.new(self.callback_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    async def fire_due_callbacks(self) -> int:
        """POST the callback of every finished task not yet called back; returns how many were sent."""
        now = self.clock.now()
        due = [t for t in self.tasks.values() if t.callback_url and not t.callback_sent and t.done(now)]
        for task in due:
            task.callback_sent = True  # before awaiting: a concurrent call must not send it again
        for task in due:
            await self._send_callback(task)
        uhd_due = [(task_id, u) for task_id, u in self.uhd.items()
                   if u.callback_url and not u.callback_sent and self._uhd_ready(u)]
        for task_id, uhd in uhd_due:
            uhd.callback_sent = True
            assert uhd.callback_url is not None
            payload = {"code": 200, "msg": "4K Video generated successfully.", "data": {
                "taskId": task_id, "info": {"resultUrls": [self.video_url(self.tasks[task_id], "-4k")],
                                            "imageUrls": []}}}
            await self._post_callback(task_id, uhd.callback_url, payload)
        return len(due) + len(uhd_due)

    async def _send_callback(self, task: FakeTask) -> None:
        assert task.callback_url is not None
        await self._post_callback(task.id, task.callback_url, self.callback_payload(task))

    async def _post_callback(self, task_id: str, url: str, payload: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json"}
        if self.callback_key:
            timestamp = str(int(self.clock.now()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = self.sign(task_id, timestamp)
        record = CallbackRecord(task_id, url, payload, headers)
        self.callbacks.append(record)
        client = self._callback_http or httpx.AsyncClient(timeout=5.0)
        try:
            response = await client.post(url, content=json.dumps(payload), headers=headers)
            record.status = response.status_code
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        finally:
            if client is not self._callback_http:
                await client.aclose()

    async def _fire_callbacks_forever(self) -> None:
        while True:
            await self.fire_due_callbacks()
            await asyncio.sleep(0.05)
