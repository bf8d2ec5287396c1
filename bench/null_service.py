"""The HTTP floor for bench/serve.py: exportguard's service shape with nothing behind it.

Same BentoML service settings (traffic, the guard middleware with bearer auth and body
limits, strict request schema) and the same serve-time configuration (see
`serve_environment`), but `POST /score` answers every account with a fixed, realistically
sized result: no scoring, no SHAP, no audit log. Its latency is what the framework and
the request/response handling cost before any model work. Started by bench/serve.py
(`bentoml serve null_service:NullScore`, cwd bench/); not part of the package.
"""

from __future__ import annotations

import gc
import os

import bentoml
from starlette.responses import Response

from exportguard.serving.middleware import GuardMiddleware
from exportguard.serving.schemas import (
    MAX_BODY_BYTES,
    AccountScore,
    ModelInfo,
    ReasonOut,
    ScoreRequest,
    ScoreResponse,
)
from exportguard.serving.service import TRAFFIC

NAME = "exportguard-null"
_MODEL = ModelInfo(name="null", version="0", sha256="0" * 64)
_REASONS = [
    ReasonOut(
        feature=f"feature_{i}",
        family="family",
        value=0.81,
        contribution=0.5 / (i + 1),
        sentence="81% of API traffic in the last 30 days came from hosting or VPN networks",
    )
    for i in range(5)
]


@bentoml.service(
    name=NAME, workers=1, traffic=TRAFFIC, endpoints={"livez": "/livez", "readyz": "/readyz"}
)
class NullScore:
    @bentoml.on_startup
    def freeze(self) -> None:
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /, ctx: bentoml.Context) -> ScoreResponse:
        results = [
            AccountScore(
                account_id=a.account_id,
                score=0.5,
                band="review",
                raw_score=0.0,
                reasons=_REASONS[: request.top_k],
            )
            for a in request.accounts
        ]
        answer = ScoreResponse(request_id="null", model=_MODEL, results=results)
        return Response(answer.model_dump_json(), media_type="application/json")  # type: ignore[return-value]


#: bench/http_floor.py sets it to measure BentoML alone, without exportguard's middleware.
if os.environ.get("EXPORTGUARD_BENCH_NO_GUARD") != "1":
    NullScore.add_asgi_middleware(GuardMiddleware, max_body_bytes=MAX_BODY_BYTES)
