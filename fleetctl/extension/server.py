"""Serve the extension tables to osqueryd over its Thrift extension protocol.

This is ``osquery.start_extension`` with its options taken as arguments instead of
from ``sys.argv`` (which holds ``fleetctl extension ...`` here, so osquery-python's own
argparse would reject it): connect to the core's manager socket, register the table
routes, start the ping watchdog that exits when the core goes away, then answer
``ping``/``call`` on ``<socket>.<uuid>`` as osqueryd expects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

from osquery import ExtensionClient, ExtensionManager
from osquery.extensions.Extension import Processor
from osquery.extensions.ttypes import InternalExtensionInfo
from osquery.management import start_watcher
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

from fleetctl import __version__
from fleetctl.extension import plugins

EXTENSION_NAME = "fleetctl"
SDK_VERSION = "3.0.7"
MIN_SDK_VERSION = "1.8.0"

log = logging.getLogger(__name__)


class ExtensionError(RuntimeError):
    """The core refused or could not be reached."""


def _listen(transport: TSocket.TServerSocket) -> None:
    """``transport.listen()`` for a unix socket path, without thrift's probe socket that
    it never closes: a stale path (nothing listening) is removed, then bound."""
    path = getattr(transport, "_unix_socket", None)
    if not path:
        transport.listen()
        return
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                os.unlink(path)
            except OSError:
                pass  # bind() below says what is wrong
    handle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        handle.bind(path)
        handle.listen(128)
    except OSError:
        handle.close()
        raise
    transport.handle = handle


class ExtensionServer(TServer.TSimpleServer):  # type: ignore[misc]  # untyped library
    """osquery-python's server (one connection at a time, as osqueryd expects) that can
    also be stopped from another thread."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._stopping = threading.Event()

    def serve(self) -> None:
        _listen(self.serverTransport)
        while not self._stopping.is_set():
            try:
                client = self.serverTransport.accept()
            except (OSError, AttributeError, TTransport.TTransportException):
                if self._stopping.is_set():
                    return
                raise
            if client:
                self._handle(client)

    def _handle(self, client: TTransport.TTransportBase) -> None:
        itrans = self.inputTransportFactory.getTransport(client)
        otrans = self.outputTransportFactory.getTransport(client)
        iprot = self.inputProtocolFactory.getProtocol(itrans)
        oprot = self.outputProtocolFactory.getProtocol(otrans)
        try:
            while True:
                self.processor.process(iprot, oprot)
        except TTransport.TTransportException:
            pass  # the peer closed the connection
        except Exception:
            log.exception("extension request failed")
        itrans.close()
        otrans.close()

    def stop(self) -> None:
        """Wake the accept() loop and close the listening socket."""
        self._stopping.set()
        handle = getattr(self.serverTransport, "handle", None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.shutdown(socket.SHUT_RDWR)
        self.serverTransport.close()


def build_server(socket_path: str) -> ExtensionServer:
    """A Thrift server answering extension calls on ``socket_path`` (what osqueryd
    connects to), routing to the registered plugins."""
    plugins.register_plugins()
    return ExtensionServer(
        Processor(ExtensionManager()),
        TSocket.TServerSocket(unix_socket=socket_path),
        TTransport.TBufferedTransportFactory(),
        TBinaryProtocol.TBinaryProtocolFactory(),
    )


def register(socket_path: str, timeout: float) -> tuple[ExtensionClient, int]:
    """Register with the core listening on ``socket_path``; returns the client and the
    extension uuid the core assigned."""
    logging.getLogger("thrift").addHandler(logging.NullHandler())
    client = ExtensionClient(path=socket_path)
    if not client.open(timeout):
        raise ExtensionError(f"Could not open socket {socket_path}")
    plugins.register_plugins()
    manager = ExtensionManager()
    status = client.extension_manager_client().registerExtension(
        info=InternalExtensionInfo(
            name=EXTENSION_NAME,
            version=__version__,
            sdk_version=SDK_VERSION,
            min_sdk_version=MIN_SDK_VERSION,
        ),
        registry=manager.registry(),
    )
    if status.code != 0:
        raise ExtensionError(status.message)
    manager.uuid = status.uuid
    return client, status.uuid


def serve(socket_path: str, timeout: float = 1, interval: float = 1) -> None:
    """Register, then serve until the core shuts the extension down or disappears."""
    client, uuid = register(socket_path, timeout)
    watcher = threading.Thread(target=start_watcher, args=(client, interval), daemon=True)
    watcher.start()
    log.info("serving %s on %s.%s", ", ".join(p.table for p in plugins.PLUGINS), socket_path, uuid)
    build_server(f"{socket_path}.{uuid}").serve()
