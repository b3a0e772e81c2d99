/**
 * Runs the real nginx with the shipped etc/nginx/packrat-mirror.conf over a tree, for tests
 * that need the production web server in front of the clients. The example is rewritten only
 * for root, listen address and server_name; pid, logs and temp files live in a throwaway
 * prefix, so /etc/nginx and /var/log/nginx are never touched (nginx -p <dir> -e <log> -c <conf>).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const NGINX_EXAMPLE_CONFIG = fileURLToPath(
  new URL("../../etc/nginx/packrat-mirror.conf", import.meta.url),
);

export interface StartNginxOptions {
  /** Directory served as `root` (root_dir of the agent). */
  root: string;
  /** Directives added to the http {} context (maps, extra servers, log formats). */
  extraConfig?: string;
  /** Directives added at the top of the packrat server {} (e.g. a fault-injecting location). */
  serverConfig?: string;
  /** Config to rewrite instead of the shipped example (same shape: maps + one server). */
  configPath?: string;
}

export interface RunningNginx {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  readonly port: number;
  /** The throwaway prefix (conf, pid, logs, temp). */
  readonly prefix: string;
  /** Request lines logged so far: `<status> <method> <uri>` (uri as requested). */
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Replace the example's `root`, `listen` and `server_name` lines. Throws when one is missing,
 * so a changed example cannot silently serve the wrong tree or port.
 */
export function rewriteExampleConfig(
  config: string,
  options: { root: string; port: number; serverConfig?: string },
): string {
  let out = config;
  const replaceOnce = (re: RegExp, by: string, what: string): void => {
    if (!re.test(out)) throw new Error(`${NGINX_EXAMPLE_CONFIG}: no ${what} line to rewrite`);
    out = out.replace(re, by);
  };
  replaceOnce(/^(\s*)root\s+[^;]+;/m, `$1root ${quoteNginx(options.root)};`, "root");
  // Drop every listen line, then add one on loopback where the first one was.
  replaceOnce(/^(\s*)listen\s+[^;]+;/m, `$1listen 127.0.0.1:${options.port};`, "listen");
  out = out.replace(/^\s*listen\s+(?!127\.0\.0\.1:)[^;]+;\n/gm, "");
  replaceOnce(/^(\s*)server_name\s+[^;]+;/m, "$1server_name localhost;", "server_name");
  if (options.serverConfig) {
    replaceOnce(/^server\s*\{\n/m, `server {\n${options.serverConfig}\n`, "server {");
  }
  return out;
}

function quoteNginx(value: string): string {
  if (/["\\$;{}\s]/.test(value)) throw new Error(`path not usable in nginx config: ${value}`);
  return value;
}

/** A port that was free a moment ago; nginx cannot listen on port 0 and report it. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) return; // the caller reads the error log
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nginx did not listen on 127.0.0.1:${port} within ${deadlineMs} ms`);
}

function mainConfig(prefix: string, extra: string): string {
  // As root, nginx's workers would switch to `nobody`, which cannot read a mkdtemp (0700)
  // tree; keep them as the invoking user instead. Unprivileged, `user` is not allowed.
  const user = process.getuid?.() === 0 ? "user root root;\n" : "";
  return `${user}daemon off;
master_process on;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 64; }
http {
    log_format packrat '$status $request_method $request_uri';
    access_log ${prefix}/access.log packrat;
    client_body_temp_path ${prefix}/tmp/body;
    proxy_temp_path ${prefix}/tmp/proxy;
    fastcgi_temp_path ${prefix}/tmp/fastcgi;
    uwsgi_temp_path ${prefix}/tmp/uwsgi;
    scgi_temp_path ${prefix}/tmp/scgi;
    sendfile on;
${extra}
    include ${prefix}/packrat-mirror.conf;
}
`;
}

/** `nginx -t` on the shipped example (rewritten like startNginx does); returns nginx's output. */
export async function checkNginxConfig(options: StartNginxOptions): Promise<string> {
  const prefix = await preparePrefix(options, await freePort());
  try {
    const { code, output } = await runNginx(["-t", ...nginxArgs(prefix)]);
    if (code !== 0) throw new Error(`nginx -t failed (exit ${code}):\n${output}`);
    return output;
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
}

function nginxArgs(prefix: string): string[] {
  return [
    "-p",
    prefix,
    "-e",
    path.join(prefix, "error.log"),
    "-c",
    path.join(prefix, "nginx.conf"),
  ];
}

async function preparePrefix(options: StartNginxOptions, port: number): Promise<string> {
  const prefix = await mkdtemp(path.join(tmpdir(), "packrat-nginx-"));
  const example = await readFile(options.configPath ?? NGINX_EXAMPLE_CONFIG, "utf8");
  const server = rewriteExampleConfig(example, {
    root: options.root,
    port,
    ...(options.serverConfig === undefined ? {} : { serverConfig: options.serverConfig }),
  });
  await writeFile(path.join(prefix, "packrat-mirror.conf"), server);
  await writeFile(path.join(prefix, "nginx.conf"), mainConfig(prefix, options.extraConfig ?? ""));
  await mkdir(path.join(prefix, "tmp"));
  return prefix;
}

function runNginx(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("nginx", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", (err) => reject(nginxMissing(err)));
    child.once("close", (code) => resolve({ code, output }));
  });
}

function nginxMissing(err: Error): Error {
  return (err as NodeJS.ErrnoException).code === "ENOENT"
    ? new Error("nginx is not installed (Debian package nginx; CI installs it)", { cause: err })
    : err;
}

/**
 * Start nginx in the foreground on a free 127.0.0.1 port. Retries with another port when the
 * one picked was taken in between (the only race of the port-0 trick).
 */
export async function startNginx(options: StartNginxOptions): Promise<RunningNginx> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const prefix = await preparePrefix(options, port);
    try {
      return await launch(prefix, port);
    } catch (err) {
      lastError = err;
      await rm(prefix, { recursive: true, force: true });
      if (!String(err).includes("Address already in use")) throw err;
    }
  }
  throw lastError;
}

async function launch(prefix: string, port: number): Promise<RunningNginx> {
  const child = spawn("nginx", nginxArgs(prefix), { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const spawnError = new Promise<never>((_, reject) =>
    child.once("error", (err) => reject(nginxMissing(err))),
  );
  await Promise.race([waitForPort(port, child, 10_000), spawnError]);
  if (child.exitCode !== null) {
    const log = await readFile(path.join(prefix, "error.log"), "utf8").catch(() => "");
    throw new Error(`nginx exited with ${child.exitCode} before listening:\n${output}${log}`);
  }
  let stopped = false;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    prefix,
    async accessLog() {
      const text = await readFile(path.join(prefix, "access.log"), "utf8").catch(() => "");
      return text.split("\n").filter((line) => line !== "");
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // SIGQUIT: graceful shutdown, workers finish their requests.
      if (child.exitCode === null) child.kill("SIGQUIT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
      await rm(prefix, { recursive: true, force: true });
    },
  };
}
