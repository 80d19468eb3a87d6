"""Test services for the Azure backends: a real Azurite, and stand-ins for Azure AD, ACR's exchange and ARM.

Azurite is Microsoft's Blob Storage emulator (npm ``azurite``); the tests run
the store contract against it. No Azure AD can run here, so
:class:`AzureAuthServer` implements the two HTTP endpoints the ACR path
talks to: the App Service managed-identity endpoint that the real
``DefaultAzureCredential`` calls (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``),
ACR's ``/oauth2/exchange``, which accepts only the token it issued, and ARM's
``listClusterUserCredential`` for AKS, which hands out registered kubeconfigs.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from shipway.localhttp import LocalServer, QuietHandler
from shipway.testing.services import ServiceError, free_port, stop_process, wait_for_http

# Azurite's documented development account (public, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> str:
    """Where ``azurite-blob`` is: $SHIPWAY_AZURITE, the services script's install, or PATH."""
    home = Path(os.environ.get("SHIPWAY_HOME", Path.home() / ".local/share/shipway-dev"))
    for candidate in (
        os.environ.get("SHIPWAY_AZURITE"),
        str(home / "azurite/node_modules/.bin/azurite-blob"),
        shutil.which("azurite-blob"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ServiceError("azurite is not installed: run scripts/services.sh (npm install azurite)")


@dataclass
class AzuriteService:
    """A running Azurite blob service on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def stop(self) -> None:
        stop_process(self.process)


def start_azurite(root: Path) -> AzuriteService:
    """Start ``azurite-blob`` on a free port with its data under ``root``."""
    binary = azurite_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (root / "azurite.log").open("wb")
    process = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(root),
         "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for_http(f"http://127.0.0.1:{port}/", "azurite", 30, process=process, log=root / "azurite.log")
    return AzuriteService(port, process)


@dataclass
class AzureAuthServer:
    """Managed-identity token endpoint + ACR ``/oauth2/exchange``, on 127.0.0.1."""

    refresh_token: str
    aad_token: str = "aad-token-for-tests"
    identity_header: str = "identity-header-for-tests"
    accept: str | None = None  # the token /oauth2/exchange accepts; default: the one it issued
    exchanges: list[dict[str, str]] = field(default_factory=list)
    clusters: dict[str, str] = field(default_factory=dict)  # "sub/rg/name" -> kubeconfig YAML (the ARM stand-in)
    scopes: list[str] = field(default_factory=list)
    _server: LocalServer | None = None

    def start(self) -> AzureAuthServer:
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # the App Service managed-identity endpoint
                url = urllib.parse.urlparse(self.path)
                if url.path != "/msi/token" or self.headers.get("X-IDENTITY-HEADER") != owner.identity_header:
                    self.answer_json(401, {"error": "bad identity request"})
                    return
                resource = urllib.parse.parse_qs(url.query).get("resource", [""])[0]
                owner.scopes.append(resource)
                expires = str(int(time.time()) + 3600)
                body = {
                    "access_token": owner.aad_token,
                    "expires_on": expires,
                    "resource": resource,
                    "token_type": "Bearer",
                }
                self.answer_json(200, body)

            def do_POST(self) -> None:  # ACR's token exchange, or ARM's listClusterUserCredential
                body = self.read_body()
                arm = re.match(
                    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft.ContainerService"
                    r"/managedClusters/([^/]+)/listClusterUserCredential",
                    self.path,
                )
                if arm:
                    if self.headers.get("Authorization") != f"Bearer {owner.aad_token}":
                        self.answer_json(401, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}})
                        return
                    found = owner.clusters.get("/".join(arm.groups()))
                    if found is None:
                        self.answer_json(404, {"error": {"code": "ResourceNotFound", "message": "cluster not found"}})
                        return
                    value = base64.b64encode(found.encode()).decode()
                    self.answer_json(200, {"kubeconfigs": [{"name": "clusterUser", "value": value}]})
                    return
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
                owner.exchanges.append(form)
                if self.path != "/oauth2/exchange" or form.get("grant_type") != "access_token":
                    self.answer_json(400, {"errors": [{"code": "UNSUPPORTED"}]})
                elif form.get("access_token") != (owner.accept or owner.aad_token):
                    self.answer_json(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                else:
                    self.answer_json(200, {"refresh_token": owner.refresh_token})

        self._server = LocalServer(Handler)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def identity_env(self) -> dict[str, str]:
        """Environment that makes DefaultAzureCredential use this server as its managed identity."""
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": self.identity_header}

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
