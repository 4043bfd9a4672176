// `sluice register`: keeps one instance registered under an etcd prefix while it runs.
#pragma once

namespace sluice::discovery {

/// Runs `sluice register --etcd HOST:PORT[,HOST:PORT...] --address HOST:PORT [--prefix /nodes/]
/// [--ttl 5] [--id ID] [--weight N] [--protocol P] [--user NAME --password PW]
/// [--ca FILE] [--cert FILE --key FILE]`.
/// `argv[0]` is the subcommand's own name ("register"); a leading "sluice" "register" pair is
/// accepted too. Grants a lease of --ttl seconds, puts `<prefix><id>` (default id: a random
/// UUID v4) = {"address": ..., "weight": ...} on it, prints `registered KEY lease ID` to
/// stdout, keeps the lease alive every ttl/3 (re-registering if it expired meanwhile), and on
/// SIGTERM/SIGINT deletes the key, revokes the lease and returns 0. Returns 1 when no etcd
/// endpoint answers at start (with a message on stderr), 2 on bad arguments.
int run_register(int argc, char** argv);

}  // namespace sluice::discovery
