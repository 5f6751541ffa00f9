"""ASGI middleware, one job per module, outermost first as `web.app` stacks them:

- `security_headers`: nosniff everywhere, a Content-Security-Policy, and no framing;
- `trusted_host`: 421 for a Host that is not this peer's (stops DNS rebinding);
- `same_origin`: 403 for cross-site requests that change state or start work, 415 for herd-mesh's JSON APIs
  sent as anything but JSON (stops CSRF); CORS for origins the user allowed;
- `client_limit`: 429 when one client address has too many requests in flight;
- `body_limit`: 413 for bodies over the route's limit, read and discarded so the client sees it;
- `mesh_auth`: with a mesh key, 401 for `/mesh/` calls and forwarded jobs not signed with it;
- `api_keys`: with API keys, 401/403 for public calls without one (with a mesh key, for settings changes).
"""

from .api_keys import ApiKeyMiddleware
from .body_limit import BodyLimitMiddleware
from .client_limit import ClientLimitMiddleware
from .mesh_auth import MeshAuthMiddleware
from .same_origin import SameOriginMiddleware
from .security_headers import SecurityHeadersMiddleware
from .trusted_host import TrustedHostMiddleware

__all__ = [
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "ClientLimitMiddleware",
    "MeshAuthMiddleware",
    "SameOriginMiddleware",
    "SecurityHeadersMiddleware",
    "TrustedHostMiddleware",
]
