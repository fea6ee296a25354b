"""The tracking server's probe, kept apart from shortrun.ops.tracking so that it runs before mlflow is imported:
a stage whose MLflow server cannot be reached fails in a second, not after many seconds of imports."""
from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request

from shortrun.errors import ShortrunError


def require_reachable_tracking_server() -> None:
    """An MLflow server that cannot be connected to fails a stage here, in a second, not after the stage's
    imports (mlflow, torch: many seconds on a busy machine). Any HTTP answer passes: whether the store is
    usable is for shortrun.ops.tracking.connect to say once mlflow is loaded."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
    except urllib.error.HTTPError:
        return
    except OSError as err:  # refused, unresolvable, timed out (URLError is an OSError)
        reason = getattr(err, "reason", err)
        if isinstance(reason, ssl.SSLError):  # it answered; TLS settings (MLFLOW_TRACKING_INSECURE_TLS ...) are mlflow's
            return
        raise ShortrunError(f"MLflow tracking store {uri} is unreachable ({reason}); start the server or set "
                            "MLFLOW_TRACKING_URI") from None
