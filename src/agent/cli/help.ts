import { formatTitles, inspectableKinds } from "../generated-text.js";

export const HELP = `packrat-agent: keep a package mirror in step with a packrat master and publish it
as signed ${formatTitles()} repositories.

Usage: packrat-agent <command> [options]

Commands:
  run                 Run the daemon in the foreground (for systemd): long-poll the master,
                      apply changes, full sync every full_sync_interval seconds.
                      SIGHUP reloads the config, SIGUSR1 runs a full sync now.
  sync                Run one sync pass and exit; the exit code says whether it succeeded
                      (and whether the bucket of [s3], if any, was brought up to date).
      --full          Full sync (the default for a one-off sync).
      --deep          Re-hash every file on disk instead of trusting fingerprints.
      --force         Apply even when the safety valve would refuse the removals.
  verify              Read every published repo as its clients do and report problems.
      --deep          Re-hash every package file.
      --json          Machine-readable report.
      --s3            Also check the bucket of [s3]: every object there, as uploaded.
  status              Last sync, per-repo files, generations, failures, key expiry.
      --json          Machine-readable output.
  inspect FILE        Print the index entry the agent would publish for FILE
                      (${inspectableKinds()}).
  keygen              Make a new signing key (primary + signing subkey) without gpg.
      --name NAME     User ID name, e.g. "Example Mirror".
      --email ADDR    User ID email.
      --out FILE      Where to write the armored secret key (mode 0600; never overwritten).
      --type TYPE     ed25519 (default) or rsa.
      --bits N        RSA size: 2048, 3072 (default) or 4096.
      --expires-days N  Expiry of the key; 0 (default) never expires.
  demo                Start a bundled fake master with sample packages, sync, and serve
                      the result over HTTP; new versions appear every 20 s.
      --dir DIR       Working directory (default ./.demo; replaced on each start).
      --once          Sync once, print where everything is, and exit.
      --port N        Serve on 127.0.0.1:N (default: a free port).

Options:
  -c, --config PATH   Config file (default: $PACKRAT_AGENT_CONFIG, else /etc/packrat/mirror.conf)
      --log-level LVL fatal, error, warn, info, debug, trace (overrides log_level)
      --log-format F  auto (default: compact on a terminal, else json), json, compact
  -h, --help          Show this help.
  -V, --version       Show the version.
`;
