"""A loopback TCP proxy that puts a long link between iamsweep and moto: every byte reaches
the other side DELAY_MS / 2 after it was sent, in each direction, so each request-answer round
trip takes DELAY_MS longer, however the bytes are chunked. Connections are kept as the client
keeps them. Serves until killed.

usage: delay_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT DELAY_MS
"""
import asyncio
import sys


async def line(reader, writer, one_way):
    """Copies reader to writer, each chunk delivered `one_way` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            at, data = await queue.get()
            if data is None:
                break
            await asyncio.sleep(max(0.0, at - loop.time()))
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            await queue.put((loop.time() + one_way, data))
    except ConnectionError:
        pass
    await queue.put((loop.time() + one_way, None))
    await sender


async def main(port, upstream, delay_ms):
    host, up_port = upstream.rsplit(":", 1)
    one_way = delay_ms / 2000.0

    async def client(c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection(host, int(up_port))
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(
            line(c_reader, u_writer, one_way),
            line(u_reader, c_writer, one_way),
            return_exceptions=True,
        )

    server = await asyncio.start_server(client, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
