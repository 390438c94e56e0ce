#ifndef HVSTACK_VMMS_RUNTIME_PATHS_H_
#define HVSTACK_VMMS_RUNTIME_PATHS_H_

#include <string>

namespace vmms {

// Where one VM's runtime files live: <state dir>/vms/<uuid>/. The layout is
// shared with vmwp through WorkerConfig (runtime_dir, socket_path) and
// worker.proto's comments.
struct RuntimePaths {
  std::string dir;
  std::string worker_config;  // WorkerConfig, written by vmms before the spawn.
  std::string worker_socket;  // WorkerService, served by vmwp.
  std::string
      exit_report;  // WorkerExitReport, written by vmwp before it exits.
  std::string
      console_log;  // COM1 output, written by vmwp, kept after it exits.
  // Issue 14. The unix socket a worker listens on for the files of a save
  // (bound by vmwp), and a Saved VM's files (vmms's own: the directory is
  // 0700 root, the worker only gets descriptors). "*.tmp" while a save
  // writes them; renamed once complete and synced.
  std::string handoff_socket;
  std::string saved_dir;
  std::string saved_state;
  std::string saved_memory;
};

inline RuntimePaths RuntimePathsFor(const std::string& state_dir,
                                    const std::string& uuid) {
  std::string dir = state_dir + "/vms/" + uuid;
  return {dir,
          dir + "/worker_config.pb",
          dir + "/worker.sock",
          dir + "/exit_report.pb",
          dir + "/console.log",
          dir + "/handoff.sock",
          dir + "/saved",
          dir + "/saved/state",
          dir + "/saved/memory"};
}

}  // namespace vmms

#endif  // HVSTACK_VMMS_RUNTIME_PATHS_H_
