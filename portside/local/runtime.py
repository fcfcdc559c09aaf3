"""The local runtime: moto on loopback standing in for AWS, the registry served through
the local gateway by a real WSGI server (cheroot), and the schedules AWS would fire."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.registry.auth import OPERATOR_SCOPE, SCOPES, hash_token, new_token_secret
from chalicelib.registry.records import AccountRecord, RegistryRecord, TokenRecord

from .access_logs import LocalAccessLogs
from .http_server import DEFAULT_THREADS, wsgi_server

LOCAL_ACCOUNT = "local"
# Schedules fired more often locally than the app's rate (seconds); see serve().
LOCAL_INTERVALS = {"purge-deleted-registries": 5.0}
log = logging.getLogger("portside.local")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_moto(
    host: str = "127.0.0.1", port: int | None = None, access_logs: LocalAccessLogs | None = None
) -> tuple[object, str]:
    """Start moto's server in this process and point every AWS client at it (with
    ``access_logs``, its blob bucket writes S3 server access logs)."""
    from moto.server import ThreadedMotoServer

    from .access_logs import logging_moto_server
    from .moto_fixes import apply_fixes

    apply_fixes()
    port = port or free_port(host)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = (
        logging_moto_server(host, port, access_logs.wrap_moto)
        if access_logs is not None
        else ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    )
    server.start()
    endpoint = f"http://{host}:{port}"
    point_aws_at(endpoint)
    return server, endpoint


def point_aws_at(endpoint: str) -> None:
    """Send every AWS client (boto3, PynamoDB, powertools) to ``endpoint``."""
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        # No CloudWatch here: keep powertools' EMF metric lines out of the local console.
        ("POWERTOOLS_METRICS_DISABLED", "true"),
    ):
        os.environ.setdefault(name, value)


@dataclass
class Bootstrap:
    registry: str
    token: str
    created_token: bool


def provision(registry: str | None, token: str | None) -> Bootstrap:
    """Create the table, the bucket, the local account, a registry and a token,
    idempotently. The token is the account's admin and the deployment's operator at once,
    so that a script against the local runtime can onboard further accounts."""
    from chalicelib.adapters.dynamo_accounts import DynamoAccountStore
    from chalicelib.adapters.dynamo_models import create_table
    from chalicelib.wiring import v2_api

    api = v2_api()
    create_table()
    api.service.blobs.create_bucket()  # type: ignore[attr-defined]
    store = api.service.store
    name = registry or "demo"
    now = datetime.now(UTC)
    accounts = DynamoAccountStore()
    if accounts.get_account(LOCAL_ACCOUNT) is None:
        accounts.put_account(AccountRecord(LOCAL_ACCOUNT, LOCAL_ACCOUNT, created_at=now))
    if store.get_registry(name) is None:
        store.put_registry(RegistryRecord(name=name, account_id=LOCAL_ACCOUNT, created_at=now))
    created = token is None
    secret = token or new_token_secret()
    if store.get_token_by_hash(hash_token(secret)) is None:
        store.put_token(
            TokenRecord(
                token_id="bootstrap" if not created else hash_token(secret)[:16],
                token_hash=hash_token(secret),
                account_id=LOCAL_ACCOUNT,
                name="bootstrap",
                scopes=SCOPES | {OPERATOR_SCOPE},
                created_at=now,
            )
        )
    return Bootstrap(name, secret, created)


def serve(
    host: str,
    port: int,
    registry: str | None,
    token: str | None,
    threads: int = DEFAULT_THREADS,
    aws_endpoint_url: str | None = None,
) -> None:
    moto_server: object | None = None
    # S3 server access logs of the blob bucket (our moto only) and API Gateway's access
    # log, delivered to the metering handlers every PORTSIDE_LOCAL_LOG_FLUSH_SECONDS.
    access_logs = LocalAccessLogs()
    if aws_endpoint_url:
        # Someone else's AWS stand-in (benchmarks run moto in its own process, so that the
        # registry's memory is measured without moto's object store in it).
        endpoint = aws_endpoint_url
        point_aws_at(endpoint)
    else:
        moto_server, endpoint = start_moto(host, access_logs=access_logs)
    from chalicelib.adapters.stepfunctions import stepfunctions_client
    from chalicelib.application import create_app
    from chalicelib.wiring import v2_api

    from .gateway import LocalGateway, edge_fix_from_env, upload_host_from_env
    from .schedules import app_schedules, run_schedules
    from .stepfunctions import app_functions, install_state_machine, run_state_machines
    from .streams import run_streams, stream_pollers

    # Before anything is wired: the app reads the state machine's ARN once, from the
    # environment, as it does on AWS.
    states = stepfunctions_client(endpoint, os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    state_machine = install_state_machine(states)
    # Large direct uploads are verified by an asynchronous Lambda invocation on AWS; here
    # by the same function, resolved from its handler string, in a thread.
    from chalicelib.wiring import use_verification_queue

    from .invocations import local_verification_queue

    use_verification_queue(local_verification_queue(create_app()))
    boot = provision(registry, token)
    access_logs.create_log_bucket()
    stop = threading.Event()
    threading.Thread(target=access_logs.run, args=(stop,), daemon=True).start()
    # Garbage collections: moto keeps the executions, the local runtime runs them.
    threading.Thread(
        target=run_state_machines,
        args=(stop, states, state_machine, app_functions(create_app())),
        daemon=True,
    ).start()
    threading.Thread(
        target=run_schedules,
        # Every schedule the app declares, through the handler strings of the deployed
        # template, at the app's rates; only the purge runs sooner than AWS's once a minute,
        # so that a deleted registry's name is free again within seconds for someone trying
        # it by hand (each run does a bounded amount of work, so running it often is cheap).
        args=(stop, app_schedules(create_app(), LOCAL_INTERVALS)),
        daemon=True,
    ).start()
    # The table's stream (quota threshold events): moto keeps it, the local runtime
    # delivers it to the stream functions as their event source mappings would.
    from chalicelib.config import settings

    config = settings()
    threading.Thread(
        target=run_streams,
        args=(stop, stream_pollers(create_app(), endpoint, config.table_name, config.region)),
        daemon=True,
    ).start()
    server = wsgi_server(
        host,
        port,
        LocalGateway(
            create_app,
            v2_api,
            edge_fix=edge_fix_from_env(),
            upload_host=upload_host_from_env(),
            lambda_workers=threads,
            access_log=access_logs.api_record,
        ),
        threads,
    )
    url_host = f"{host}:{port}"
    print(f"Portside is serving on http://{url_host} (AWS stand-in: moto at {endpoint})")
    print(f"Registry: {boot.registry}" + ("   (token created now)" if boot.created_token else ""))
    print("Log in and push:")
    # A token the user chose is theirs already: print it only when it was made up here.
    shown = boot.token if boot.created_token else "$PORTSIDE_BOOTSTRAP_TOKEN"
    print(f'  echo "{shown}" | docker login {url_host} -u "{shown}" --password-stdin')
    print(f"  docker tag alpine {url_host}/{boot.registry}/alpine:latest")
    print(f"  docker push {url_host}/{boot.registry}/alpine:latest")
    # The same token is the local deployment's operator (docs/operating.md).
    print("Onboard another tenant (the token is also the operator's):")
    print(f"  portside --api-url http://{url_host} --token {shown} account create NAME", flush=True)
    try:
        server.safe_start()
    finally:
        stop.set()
        if moto_server is not None:
            moto_server.stop()  # type: ignore[attr-defined]
