"""Ray Serve: the registered model behind an HTTP API with a page (docs/serving.md).

``radzero.platform.serve:app`` is the application with the default config (``serve run``,
``serve build``); :func:`build_app` builds it from a :class:`ServeJobConfig`,
:func:`serve_config` writes it as a Serve config file and :func:`deploy` deploys that.
"""

from radzero.platform.serve.app import app, build_app, deploy, http_options, serve_config
from radzero.platform.serve.config import ServeJobConfig

__all__ = ["ServeJobConfig", "app", "build_app", "deploy", "http_options", "serve_config"]
