#!/usr/bin/env python3
"""TCP proxies between credexd nodes that a fault script can cut and heal.

One process holds one proxy per directed route ("changsha>wuhan": the connections Changsha
dials to reach Wuhan), each listening on its own 127.0.0.1 port and forwarding to the node's
real address. A line-based control port takes commands and answers "ok ..." once the command
has taken effect, or "err ..." (so a script never sleeps hoping a cut happened):

  cut A B [drop|reset]   both routes between A and B
  isolate A [drop|reset] every route from and to A
  heal A B | heal A | heal-all
  rate A B BYTES_PER_S   both routes between A and B carry at most that many bytes a second
                         each way (0: no limit), as a WAN link of that bandwidth would
  stats                  "ok route=state/connections/bytes ..." for every route
  ping

A cut is one of two network failures:
  drop   the partition a WAN link has: nothing crosses either way, nothing is closed. Bytes
         already read wait in the proxy; new connections are accepted and held without being
         forwarded, as SYNs to an unreachable host would be. On heal everything resumes, like
         TCP retransmitting after a partition, unless a node gave up on the connection first.
  reset  a link that fails loudly: every connection is reset (RST) now, and new ones until heal.

Usage: proxy.py CONTROL_PORT NAME=LISTEN_PORT:TARGET_PORT ...   (all on 127.0.0.1)
"""

import asyncio
import socket
import sys

HOST = "127.0.0.1"
CHUNK = 64 << 10


class Route:
    def __init__(self, name, listen, target):
        self.name = name
        self.a, self.b = name.split(">")
        self.listen = listen
        self.target = target
        self.state = "open"
        self.opened = asyncio.Event()
        self.opened.set()
        self.conns = set()
        self.bytes = 0
        self.rate = 0

    def set_state(self, state):
        self.state = state
        if state == "open":
            self.opened.set()
        else:
            self.opened.clear()
        if state == "reset":
            for conn in list(self.conns):
                conn.abort()
            # Held pumps wake, see the reset and end.
            self.opened.set()

    async def passable(self):
        """Waits until bytes may cross; False when the route is reset."""
        while self.state == "drop":
            self.opened.clear()
            await self.opened.wait()
        return self.state == "open"


class Conn:
    def __init__(self, route, writers):
        self.route = route
        self.writers = writers

    def abort(self):
        for w in self.writers:
            if w is not None and not w.is_closing():
                # SO_LINGER 0: close with a RST, as a failed link does.
                sock = w.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    except OSError:
                        pass
                w.transport.abort()


async def pump(route, reader, writer):
    try:
        while True:
            if not await route.passable():
                return
            data = await reader.read(CHUNK)
            if not data:
                return
            if not await route.passable():
                return
            route.bytes += len(data)
            writer.write(data)
            await writer.drain()
            if route.rate:
                await asyncio.sleep(len(data) / route.rate)
    except (ConnectionError, OSError):
        return
    finally:
        if not writer.is_closing():
            writer.close()


async def handle(route, creader, cwriter):
    conn = Conn(route, [cwriter])
    route.conns.add(conn)
    try:
        if not await route.passable():
            conn.abort()
            return
        try:
            ureader, uwriter = await asyncio.open_connection(HOST, route.target)
        except OSError:
            conn.abort()
            return
        conn.writers.append(uwriter)
        if route.state != "open":
            conn.abort()
            return
        await asyncio.gather(pump(route, creader, uwriter), pump(route, ureader, cwriter))
    finally:
        route.conns.discard(conn)
        for w in conn.writers:
            if not w.is_closing():
                w.close()


def routes_of(routes, a, b=None):
    return [r for r in routes.values() if (r.a == a and (b is None or r.b == b)) or (r.b == a and (b is None or r.a == b))]


def command(routes, line):
    words = line.split()
    if not words:
        return "err empty command"
    op, args = words[0], words[1:]
    if op == "ping":
        return "ok"
    if op == "stats":
        return "ok " + " ".join(f"{r.name}={r.state}/{len(r.conns)}/{r.bytes}" for r in routes.values())
    if op == "heal-all":
        for r in routes.values():
            r.set_state("open")
        return "ok"
    if op == "rate":
        if len(args) != 3 or not args[2].isdigit():
            return "err usage: rate A B BYTES_PER_S"
        chosen = routes_of(routes, args[0], args[1])
        if not chosen:
            return f"err no route for {args[0]} {args[1]}"
        for r in chosen:
            r.rate = int(args[2])
        return "ok " + " ".join(f"{r.name}:{r.rate}B/s" for r in chosen)
    if op in ("cut", "isolate", "heal"):
        mode = "open"
        if op != "heal":
            mode = "drop"
            if args and args[-1] in ("drop", "reset"):
                mode = args.pop()
        if op == "cut" and len(args) != 2 or op == "isolate" and len(args) != 1 or op == "heal" and len(args) not in (1, 2):
            return f"err usage: {op} takes {'A B' if op == 'cut' else 'A' if op == 'isolate' else 'A [B]'}"
        chosen = routes_of(routes, *args)
        if not chosen:
            return f"err no route for {' '.join(args)}"
        for r in chosen:
            r.set_state(mode)
        return "ok " + " ".join(f"{r.name}={r.state}" for r in chosen)
    return f"err unknown command {op!r}"


async def control(routes, reader, writer):
    try:
        while line := await reader.readline():
            writer.write((command(routes, line.decode().strip()) + "\n").encode())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    routes = {}
    for spec in argv[1:]:
        name, ports = spec.split("=")
        listen, target = ports.split(":")
        routes[name] = Route(name, int(listen), int(target))
    servers = []
    for r in routes.values():
        servers.append(await asyncio.start_server(lambda rd, wr, r=r: handle(r, rd, wr), HOST, r.listen))
    # The control port last: once it answers, every route listens.
    servers.append(await asyncio.start_server(lambda rd, wr: control(routes, rd, wr), HOST, int(argv[0])))
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
