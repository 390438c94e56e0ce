#include "vmms/state_machine.h"

#include <cctype>

#include "absl/strings/str_cat.h"

namespace vmms {
namespace {

using hvstack::v1::VmState;

constexpr VmState kOff = hvstack::v1::VM_STATE_OFF;
constexpr VmState kStarting = hvstack::v1::VM_STATE_STARTING;
constexpr VmState kRunning = hvstack::v1::VM_STATE_RUNNING;
constexpr VmState kPaused = hvstack::v1::VM_STATE_PAUSED;
constexpr VmState kStopping = hvstack::v1::VM_STATE_STOPPING;
constexpr VmState kSaving = hvstack::v1::VM_STATE_SAVING;
constexpr VmState kRestoring = hvstack::v1::VM_STATE_RESTORING;
constexpr VmState kCrashed = hvstack::v1::VM_STATE_CRASHED;
constexpr VmState kSaved = hvstack::v1::VM_STATE_SAVED;

// The phrase after "cannot ": "start it", "shut it down", ...
const char* Action(VmRequest request) {
  switch (request) {
    case VmRequest::kStart:
      return "start it";
    case VmRequest::kStop:
      return "stop it";
    case VmRequest::kDelete:
      return "delete it";
    case VmRequest::kPause:
      return "pause it";
    case VmRequest::kResume:
      return "resume it";
    case VmRequest::kReset:
      return "reset it";
    case VmRequest::kReboot:
      return "reboot it";
    case VmRequest::kShutdown:
      return "shut it down";
    case VmRequest::kUpdateHardware:
      return "change its hardware configuration";
    case VmRequest::kSave:
      return "save it";
    case VmRequest::kDiscardSaved:
      return "discard its saved state";
    case VmRequest::kCheckpoint:
      return "create, apply or delete its checkpoints";
  }
  return "do that";
}

// What the user can do about a refusal.
const char* Hint(VmState state, VmRequest request) {
  switch (state) {
    case kOff:
      if (request == VmRequest::kDiscardSaved) return "it has no saved state";
      return request == VmRequest::kStop ? "it is not running"
                                         : "start it first";
    case kCrashed:
      if (request == VmRequest::kDiscardSaved) return "it has no saved state";
      return "it is not running; start it (or delete it)";
    case kSaved:
      if (request == VmRequest::kStop) return "it is not running";
      return "start it to restore it, or discard its saved state";
    case kStarting:
      return "wait until it is running (or stop it)";
    case kRunning:
      if (request == VmRequest::kStart) return "it is running already";
      if (request == VmRequest::kCheckpoint) {
        return "save it (checkpoints keep a Saved VM's state) or stop it "
               "first";
      }
      if (request == VmRequest::kResume) return "it is not paused";
      if (request == VmRequest::kDiscardSaved) return "it has no saved state";
      return "stop it first";
    case kPaused:
      if (request == VmRequest::kPause) return "it is paused already";
      if (request == VmRequest::kCheckpoint) return "save it or stop it first";
      if (request == VmRequest::kDelete ||
          request == VmRequest::kUpdateHardware ||
          request == VmRequest::kStart) {
        return "stop it first";
      }
      if (request == VmRequest::kDiscardSaved) return "it has no saved state";
      return "resume it first";
    case kStopping:
      return "wait until it is off";
    case kSaving:
    case kRestoring:
      return "wait until that has finished (or stop it)";
    default:
      return "its state is unknown";
  }
}

}  // namespace

const char* RequestName(VmRequest request) {
  switch (request) {
    case VmRequest::kStart:
      return "start";
    case VmRequest::kStop:
      return "stop";
    case VmRequest::kDelete:
      return "delete";
    case VmRequest::kPause:
      return "pause";
    case VmRequest::kResume:
      return "resume";
    case VmRequest::kReset:
      return "reset";
    case VmRequest::kReboot:
      return "reboot";
    case VmRequest::kShutdown:
      return "shutdown";
    case VmRequest::kUpdateHardware:
      return "update";
    case VmRequest::kSave:
      return "save";
    case VmRequest::kDiscardSaved:
      return "discard-saved";
    case VmRequest::kCheckpoint:
      return "checkpoint";
  }
  return "unknown";
}

bool HasWorker(VmState state) {
  switch (state) {
    case kStarting:
    case kRunning:
    case kPaused:
    case kStopping:
    case kSaving:
    case kRestoring:
      return true;
    default:
      return false;
  }
}

namespace {

bool Allowed(VmState state, VmRequest request) {
  switch (request) {
    case VmRequest::kStart:
    case VmRequest::kDelete:
    case VmRequest::kUpdateHardware:
      // A Saved VM's hardware may change: its restore then refuses the
      // mismatch naming the field, and the VM stays Saved.
      return state == kOff || state == kCrashed || state == kSaved;
    case VmRequest::kSave:
      return state == kRunning || state == kPaused;
    case VmRequest::kDiscardSaved:
      return state == kSaved;
    case VmRequest::kCheckpoint:
      return state == kOff || state == kCrashed || state == kSaved;
    case VmRequest::kStop:
      // A hard power-off is always possible while there is a worker.
      return HasWorker(state);
    case VmRequest::kPause:
    case VmRequest::kReboot:
    case VmRequest::kShutdown:
      return state == kRunning;
    case VmRequest::kResume:
      return state == kPaused;
    case VmRequest::kReset:
      return state == kRunning || state == kPaused;
  }
  return false;
}

}  // namespace

absl::Status CheckRequest(const hvstack::v1::Vm& vm, VmRequest request) {
  if (Allowed(vm.state(), request)) return absl::OkStatus();
  // The state's stored name ("paused"), as in every other message.
  std::string state = hvstack::v1::VmState_Name(vm.state());
  state = state.substr(state.rfind('_') + 1);
  for (char& c : state) c = static_cast<char>(std::tolower(c));
  return absl::FailedPreconditionError(
      absl::StrCat("VM '", vm.name(), "' is ", state, "; cannot ",
                   Action(request), ": ", Hint(vm.state(), request)));
}

bool IsAllowedTransition(VmState from, VmState to) {
  // Any state with a worker can end: the worker exited, was killed or
  // stopped.
  if (HasWorker(from) && (to == kOff || to == kCrashed)) return true;
  switch (from) {
    case kOff:
      // Saved: a checkpoint of a Saved VM applied (issue 14).
      return to == kStarting || to == kRestoring || to == kSaved;
    case kCrashed:
      // Saved: a checkpoint of a Saved VM applied.
      return to == kStarting || to == kRestoring || to == kSaved;
    case kStarting:
      return to == kRunning || to == kStopping;
    case kRunning:
      return to == kPaused || to == kStopping || to == kSaving ||
             to == kStarting;  // hard reset: a fresh worker
    case kPaused:
      return to == kRunning || to == kStopping || to == kSaving ||
             to == kStarting;
    case kSaving:
      // Saved; or the save failed and the worker goes on as it was.
      return to == kSaved || to == kRunning || to == kPaused || to == kStopping;
    case kRestoring:
      // Running; or the restore failed and the saved state stays.
      return to == kRunning || to == kPaused || to == kStopping || to == kSaved;
    case kSaved:
      return to == kRestoring || to == kOff;
    case kStopping:
      return false;
    default:
      return false;
  }
}

}  // namespace vmms
