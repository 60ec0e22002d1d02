"""A gRPC channel to a coordinator: shared by the worker and the control client (kernel layer)."""

from __future__ import annotations

from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 80 << 20
# Wire contract: a call the coordinator refused for now (RESOURCE_EXHAUSTED: a join past its
# admitted rate) may carry this trailing metadata, the seconds to wait before trying again.
RETRY_AFTER_KEY = "retry-after"


def open_channel(address: str, ca: Path | None = None, client_cert: Path | None = None,
                 client_key: Path | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Channel:
    """A channel to the coordinator: TLS when a CA is given (mutual with a client cert and key)."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.enable_retries", 0)]  # our callers decide about retrying
    if ca is None:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None)
    return grpc.secure_channel(address, credentials, options=options)
