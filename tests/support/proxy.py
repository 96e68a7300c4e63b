"""A TCP proxy in front of Postgres or Redis that a test cuts, hangs or stalls: the network
failures the fault tests inject."""

import contextlib
import socket
import threading
import time


class TcpProxy:
    """A TCP proxy in front of a service that a test can cut (refuse), hang (accept, never answer)
    or stall (keep every connection open, pass no bytes: a frozen peer), or in which it can
    stall only the connections that carry given bytes (stall_on)."""

    def __init__(self, target_port: int, narrow: bool = False):
        self.target_port = target_port
        self.mode = "forward"
        self.listener = socket.create_server(("127.0.0.1", 0))
        if narrow:
            # Loopback's 64-KB segments let a client buffer megabytes into a peer that stopped
            # reading; the smallest window and segments make its writes block after tens of KB
            # (40-80 KB measured), as on a network when the peer freezes (a full send buffer).
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
            self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.held = 0  # chunks a 'stall' has held so far
        self.stall_trigger: bytes | None = None  # see stall_on
        self.stalled: list[list[bool]] = []  # the links stall_on froze: [True] until thawed
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            with self.lock:
                self.connections.append(client)
            if self.mode == "hang":
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.append(upstream)
            link = [False]  # frozen by stall_on: both directions of this connection
            for a, b, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, link, outbound),
                                 daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, link: list[bool],
              outbound: bool) -> None:
        try:
            while True:
                while link[0]:  # frozen by stall_on: nothing read, so the writer backs up
                    time.sleep(0.01)
                data = self._receive(source, link, outbound)
                if data is None:
                    continue  # it froze on these bytes, left unread
                if not data:
                    break
                if self.mode == "stall":
                    self.held += 1
                while self.mode == "stall" or link[0]:  # hold the bytes until the peer "thaws"
                    time.sleep(0.01)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Shutting both ends down stops the other direction's thread; each thread closes the
            # socket it reads, so no socket is left for the garbage collector.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            source.close()

    def _receive(self, source: socket.socket, link: list[bool], outbound: bool) -> bytes | None:
        """The next bytes from `source` (b"" at its end), or None when they are a client's
        holding the stall_on trigger: they freeze the connection and stay unread (read, they
        would let the kernel take more from the writer)."""
        trigger = self.stall_trigger
        if not outbound or trigger is None:
            return source.recv(65536)
        data = source.recv(65536, socket.MSG_PEEK)
        if trigger not in data:
            return source.recv(len(data))
        link[0] = True
        self.held += 1
        with self.lock:
            self.stalled.append(link)
        return None

    def set_mode(self, mode: str) -> None:
        """'forward', 'cut' (drop every connection, refuse new ones), 'hang' (drop every
        connection, accept new ones and never answer) or 'stall' (keep every connection, old and
        new, but pass no bytes either way until the mode changes back to 'forward'). Any mode
        thaws the connections stall_on froze, and stops freezing more."""
        self.mode = mode
        self.stall_trigger = None
        with self.lock:
            stalled, self.stalled = self.stalled, []
        for link in stalled:
            link[0] = False
        if mode not in ("forward", "stall"):
            with self.lock:
                connections, self.connections = self.connections, []
            for sock in connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def stall_on(self, trigger: bytes) -> None:
        """Stall each connection from the first chunk its client sends containing `trigger`
        (that chunk included), as 'stall' does, while the others keep forwarding: one frozen
        peer, such as the connection that carried a SUBSCRIBE. set_mode thaws them."""
        self.stall_trigger = trigger

    def close(self) -> None:
        self.set_mode("cut")
        self.listener.close()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def redis_url_through(proxy: TcpProxy) -> str:
    """The URL of the Redis behind `proxy`, reached through it."""
    return f"redis://127.0.0.1:{proxy.port}/0"
