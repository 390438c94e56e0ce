#ifndef HVSTACK_VMWP_WORKER_H_
#define HVSTACK_VMWP_WORKER_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "proto/hvstack/internal/worker.pb.h"
#include "vmwp/signal_watcher.h"

namespace vmwp {

// Reads and checks a serialized WorkerConfig. InvalidArgument for an unreadable
// file, a parse error or an unusable value (memory not a multiple of 2 MiB,
// socket path too long, ...).
absl::StatusOr<hvstack::internal::WorkerConfig> ReadWorkerConfig(
    const std::string& path);

// Composes the VM described by `config` and runs it to the end:
//   KVM (the inherited kvm_fd, else kvm_device_path) -> vid partition with the
//   configured memory and VPs -> kernel + zero page -> COM1 UART (console ring
//   + console.log) and the ACPI PM1a power port -> WorkerService on socket_path
//   -> one byte on `ready_fd` (if >= 0; then closed)
//   -> run until power-off, crash or stop (WorkerService.Stop, SIGTERM/SIGINT
//   via `signals`).
// Never writes the ready byte when composition fails. Returns the exit report
// to write.
// Where the sandbox (vmwp/sandbox) plugs into the run. All may be empty (an
// unconfined worker).
struct WorkerHooks {
  // First thing on every VP thread, before its first KVM_RUN
  // (vid::PartitionConfig::on_vp_thread_start): InstallThreadFilter(kVcpu).
  std::function<absl::Status(uint32_t vp_index)> on_vp_thread_start;
  // First thing on every device thread the worker starts (VMBus's heartbeat
  // timer): InstallThreadFilter(kDevice).
  std::function<absl::Status()> on_device_thread_start;
  // After the VM is composed (partition, memory, kernel, devices, the socket
  // bound) and before the ready byte, so that "Running" in vmms means
  // confined: LockDown (SIGSYS reporter + process-wide seccomp filter). An
  // error is a start failure.
  std::function<absl::Status()> before_ready;
  // Test builds only (vmwp_testing): runs once the ready byte is written.
  std::function<void()> after_ready;
};

hvstack::internal::WorkerExitReport RunWorker(
    const hvstack::internal::WorkerConfig& config, int ready_fd,
    SignalWatcher* signals, const WorkerHooks& hooks = {});

}  // namespace vmwp

#endif  // HVSTACK_VMWP_WORKER_H_
