#ifndef HVSTACK_VMWP_ZYGOTE_H_
#define HVSTACK_VMWP_ZYGOTE_H_

#include <optional>
#include <string>
#include <vector>

namespace vmwp {

// The worker fork server (vmms/sandbox/zygote.h is vmms's side): vmms starts
// `vmwp --zygote-fd=N` once; it loads and initializes what every worker needs
// (the libraries and their relocations, the time zone, the cycle clock) and
// then serves ZygoteSpawnRequests on descriptor N. Each request becomes a
// worker: clone(CLONE_PARENT | the request's namespaces), so the worker is
// vmms's own child as an exec'd one would be (vmms's waitpid sees its real
// end, e.g. SIGSYS), then the worker joins the request's net namespace, gets
// its descriptors at their numbers and nothing else, writes the request's argv
// over its own argument strings (`argc`/`argv`: what /proc/<pid>/cmdline
// shows; vmms makes them long enough with a --zygote-cmdline-room filler), and
// runs WorkerMain with it: from there it is the
// same worker, confining itself the same way. The zygote stays single-threaded
// and holds no VM.
//
// Returns in each new worker with the argv it runs; returns nullopt in the
// zygote when vmms has closed the socket (or the zygote cannot serve: the
// reason is logged), after which the zygote exits.
std::optional<std::vector<std::string>> ServeZygote(int control_fd, int argc,
                                                    char** argv);

// N when the command line is `vmwp --zygote-fd=N [--zygote-cmdline-room=...]`;
// nullopt for a worker's.
std::optional<int> ZygoteFdFlag(int argc, char** argv);

}  // namespace vmwp

#endif  // HVSTACK_VMWP_ZYGOTE_H_
