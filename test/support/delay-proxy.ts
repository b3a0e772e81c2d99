/**
 * A TCP proxy that holds each chunk the client sends for `delayMs` before passing it on: a slow
 * link between the agent and its bucket, so the moments between one upload and the next are
 * long enough for a reader on the fast path to fall into them (the publish-order tests).
 */
import net from "node:net";

export interface DelayProxy {
  url: string;
  /** Down: every connection is reset at once (a bucket that cannot be reached); up again. */
  setDown(down: boolean): void;
  close(): Promise<void>;
}

export async function startDelayProxy(targetPort: number, delayMs: number): Promise<DelayProxy> {
  const sockets = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    // Chunks keep their order: each waits for the one before it and then for the delay.
    let last = Promise.resolve();
    client.on("data", (chunk: Buffer) => {
      client.pause();
      last = last
        .then(() => new Promise<void>((r) => setTimeout(r, delayMs)))
        .then(() => {
          if (!upstream.destroyed) upstream.write(chunk);
          client.resume();
        });
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    setDown(value) {
      down = value;
      if (down) for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
