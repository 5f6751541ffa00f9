"""The dashboard's page and API, the job tracker and the contract itself: the routes people and their tools
read the mesh through, limited as `web/routes/dashboard.py` limits them."""

from __future__ import annotations

from ...core.settings import SCHEMA as SETTINGS
from ...core.stats import KINDS
from ...dispatch.jobs import REQUEST_ID_RE
from ..routes.dashboard import MAX_HOURS, MAX_RECENT, MAX_TZ_MINUTES, STATIC_FILES
from .schemas import Schema, body, errors, json_answer, op, query, ref


def dashboard_paths() -> Schema:
    detail = query(
        "detail",
        {"type": "string", "enum": ["1", "true", "0", "false"]},
        "1: add the schema, who changed what, and which peers agree",
    )
    settings_change = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            key: {"type": "boolean"}
            if s.type is bool
            else {"type": "integer", "minimum": s.minimum, "maximum": s.maximum}
            for key, s in SETTINGS.items()
        },
    }
    settings_answer = json_answer(
        {"anyOf": [ref("Settings"), {"type": "object", "required": ["settings", "schema"]}]}
    )
    stats_params = [
        query("hours", {"type": "integer", "minimum": 1, "maximum": MAX_HOURS, "default": 24}, "the window"),
        query(
            "recent",
            {"type": "integer", "minimum": 0, "maximum": MAX_RECENT, "default": 20},
            "how many recent events to list",
        ),
        query(
            "scope",
            {"type": "string", "enum": ["mesh", "local"], "default": "mesh"},
            "local: this peer's records only",
        ),
        query(
            "tz",
            {"type": "integer", "minimum": -MAX_TZ_MINUTES, "maximum": MAX_TZ_MINUTES, "default": 0},
            "the reader's offset from UTC in minutes (east positive): the timeline's buckets start on its hours",
        ),
    ]
    health = {
        "type": "object",
        "required": ["self", "mesh", "settings", "last_24h"],
        "properties": {"settings": ref("Settings"), "self": {"type": "string"}},
    }
    return {
        "/dashboard": {
            "get": op(
                "The dashboard page",
                "dashboard",
                {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                    **errors(),
                },
            )
        },
        "/dashboard/static/{name}": {
            "get": op(
                "The dashboard's script and style sheet",
                "dashboard",
                {
                    "200": {
                        "description": "the file",
                        "content": {
                            media.split(";")[0]: {"schema": {"type": "string"}} for media in STATIC_FILES.values()
                        },
                    },
                    **errors(404),
                },
                parameters=[
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(STATIC_FILES)},
                    }
                ],
            )
        },
        "/dashboard/api/settings": {
            "get": op(
                "The settings in force (the same on every peer)",
                "dashboard",
                {"200": settings_answer, **errors(400)},
                parameters=[detail],
            ),
            "post": op(
                "Change settings on every peer of the mesh",
                "dashboard",
                {"200": settings_answer, **errors(400, 413, 415)},
                parameters=[detail],
                requestBody=body(settings_change, {"image_generation": True}),
            ),
        },
        "/dashboard/api/image-stats": {
            "get": op(
                "Image statistics over the mesh",
                "dashboard",
                {"200": json_answer(ref("Stats")), **errors(400)},
                parameters=stats_params,
            )
        },
        "/dashboard/api/stats": {
            "get": op(
                "Statistics of one kind, or of every kind",
                "dashboard",
                {"200": json_answer(ref("Stats")), **errors(400)},
                parameters=[
                    *stats_params,
                    query("kind", {"type": "string", "enum": list(KINDS)}, "every kind when left out"),
                ],
            )
        },
        "/dashboard/api/health": {
            "get": op(
                "Peers, the last day's activity, and advice", "dashboard", {"200": json_answer(health), **errors()}
            )
        },
        "/dashboard/api/events": {
            "get": op(
                "Server-sent events, each when it changes: `peers`, `settings`, `records`; the stream stays open",
                "dashboard",
                {
                    "200": {"description": "an endless event stream", "content": {"text/event-stream": {}}},
                    **errors(503),
                },
                **{"x-endless": True},
            )
        },
        "/dashboard/api/routing": {
            "get": op(
                "Why a request went where it went, with each peer's try",
                "dashboard",
                {"200": json_answer({"type": "object", "required": ["same_id"]}), **errors(400, 404)},
                parameters=[
                    {
                        "name": "job",
                        "in": "query",
                        "required": True,
                        "description": "the X-Request-Id of the answer",
                        "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
                    }
                ],
            )
        },
    }


def other_paths() -> Schema:
    return {
        "/": {"get": op("Redirects to the dashboard", "dashboard", {"307": {"description": "to /dashboard"}})},
        "/openapi.json": {"get": op("This contract", "meta", {"200": json_answer({"type": "object"}), **errors()})},
        "/api/jobs/{job_id}": {
            "get": op(
                "Where a job is: queued where, step i of n, ETA",
                "jobs",
                {"200": json_answer(ref("Job")), **errors(400, 404)},
                parameters=[
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
                        "description": "the X-Request-Id of the request",
                    },
                    query("local", {"type": "string"}, "1: ask this peer only (any other value: the mesh)"),
                ],
            )
        },
    }
