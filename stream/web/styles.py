"""``GET /v1/styles`` (the styles a request may name) and ``GET /v1/styles/{name}/thumbnail`` (a small
stylised sample, made once a style on the model thread, then cached)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from .. import weights
from ..mjpeg import encode_jpeg
from ..serve import RequestError
from .deps import Service, State

THUMBNAIL = Path(__file__).resolve().parent.parent / "webui" / "thumbnail.jpg"
THUMBNAIL_SIDE = 160  # pixels, the cap thumbnails are stylised at

router = APIRouter()


@router.get("/v1/styles")
async def styles(service: Service) -> dict:
    listed = _styles_json()
    if service.default_style not in {s["name"] for s in listed}:  # the server's default may be a file
        listed.insert(0, {"name": service.default_style, "origin": "this server's default",
                          "thumbnail": f"/v1/styles/{service.default_style}/thumbnail"})
    return {"default": service.default_style, "live_default": service.live_style, "styles": listed}


@router.get("/v1/styles/{name}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(name: str, state: State) -> Response:
    service = state.service
    if name != service.default_style and name not in {s.name for s in weights.list_styles()}:
        raise RequestError(404, f"unknown style {name!r}")

    def render() -> bytes:
        with state.thumb_lock:
            if name not in state.thumbnails:
                import cv2

                rgb = cv2.cvtColor(cv2.imread(str(THUMBNAIL)), cv2.COLOR_BGR2RGB)
                state.thumbnails[name] = encode_jpeg(service.run(name, THUMBNAIL_SIDE, rgb))
            return state.thumbnails[name]

    data = await state.on_model_thread(render)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def _styles_json() -> list[dict]:
    return [{"name": s.name, "origin": s.origin, "license": s.meta.get("license"), "lite": s.lite,
             "recommended_max_side": s.recommended_max_side, "quality": s.meta.get("quality"),
             "thumbnail": f"/v1/styles/{s.name}/thumbnail"} for s in weights.list_styles()]
