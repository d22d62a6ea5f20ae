"""pytest plugin (not a test module) that runs the server tests with MONAI Label 0.8.5's own
DICOMweb proxy instead of the app's, to show what the app's proxy fixes:

    PYTHONPATH=tests .venv/bin/python -m pytest -q -p upstream_proxy tests/test_ohif_viewer.py \
        tests/test_pacs_datastore.py      # expected: the proxy tests fail and Orthanc crashes

It removes the proxy route from the app copy the tests run (servers.app_copy); nothing in
the repository changes.
"""

from pathlib import Path

import servers

PROXY_ROUTE = "    ours.include_router(dicomweb_proxy.router(on_stored), prefix=settings.MONAI_LABEL_API_STR)\n"
_app_copy = servers.app_copy


def app_copy_with_upstream_proxy(tmp: Path) -> Path:
    app = _app_copy(tmp)
    routes = app / "lib" / "endpoints" / "__init__.py"
    text = routes.read_text()
    if PROXY_ROUTE not in text:
        raise RuntimeError(f"{routes} changed: update PROXY_ROUTE in this plugin")
    routes.write_text(text.replace(PROXY_ROUTE, ""))
    return app


servers.app_copy = app_copy_with_upstream_proxy
