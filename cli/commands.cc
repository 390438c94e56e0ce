#include "cli/commands.h"

#include <fcntl.h>
#include <google/protobuf/empty.pb.h>
#include <grpcpp/grpcpp.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cli/call_support.h"
#include "cli/exit_codes.h"
#include "cli/nic_commands.h"
#include "cli/output.h"
#include "cli/terminal.h"

namespace vmctl {
namespace {

int PrintVm(Session& session, const grpc::Status& status,
            const hvstack::v1::Vm& vm) {
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(vm) : FormatVm(vm));
  return kExitOk;
}

}  // namespace

Session Connect(const std::string& socket_path, bool json, std::ostream& out,
                std::ostream& err) {
  auto channel = grpc::CreateChannel("unix:" + socket_path,
                                     grpc::InsecureChannelCredentials());
  return Session{socket_path, json, hvstack::v1::VmService::NewStub(channel),
                 &out,        &err, -1,
                 channel};
}

int CreateCommand(Session& session, const CreateArgs& args) {
  hvstack::v1::CreateVmRequest request;
  request.set_name(args.name);
  std::error_code ec;
  std::filesystem::path kernel = std::filesystem::absolute(args.kernel, ec);
  request.mutable_config()->set_kernel_path(
      ec ? args.kernel : kernel.lexically_normal().string());
  request.mutable_config()->set_memory_mib(args.memory_mib);
  request.mutable_config()->set_vcpus(args.cpus);
  request.mutable_config()->set_cmdline(args.cmdline);
  request.mutable_config()->set_disable_enlightenments(args.no_enlightenments);
  if (args.on_guest_crash)
    request.mutable_config()->set_on_guest_crash(*args.on_guest_crash);
  if (args.backend == "libvirt") {
    request.mutable_config()->set_backend(hvstack::v1::BACKEND_LIBVIRT);
    request.mutable_config()->mutable_libvirt()->set_accelerator(
        args.accelerator == "tcg"
            ? hvstack::v1::LibvirtOptions::ACCELERATOR_TCG
            : hvstack::v1::LibvirtOptions::ACCELERATOR_KVM);
  }
  if (!args.initrd.empty()) {
    std::filesystem::path initrd = std::filesystem::absolute(args.initrd, ec);
    request.mutable_config()->set_initrd_path(
        ec ? args.initrd : initrd.lexically_normal().string());
  }
  for (const std::string& spec : args.disks) {
    std::string error;
    if (!ParseDiskSpec(spec, request.mutable_config()->add_disks(), &error)) {
      *session.err << "vmctl: --disk " << spec << ": " << error << "\n";
      return kExitUsage;
    }
  }
  for (const std::string& spec : args.nics) {
    absl::StatusOr<hvstack::v1::NicConfig> nic = ParseNicSpec(spec);
    if (!nic.ok()) {
      *session.err << "vmctl: --nic: " << nic.status().message() << "\n";
      return kExitUsage;
    }
    *request.mutable_config()->add_nics() = *nic;
  }
  grpc::ClientContext context;
  // Each disk image is checked with qemu-img: more than a database call.
  SetDeadline(context, args.disks.empty() ? kQuickDeadline : kWorkerDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->CreateVm(&context, request, &vm), vm);
}

int ListCommand(Session& session) {
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::ListVmsResponse response;
  grpc::Status status =
      session.stub->ListVms(&context, hvstack::v1::ListVmsRequest(), &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response) : FormatTable(response));
  return kExitOk;
}

int ShowCommand(Session& session, const std::string& name) {
  hvstack::v1::GetVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->GetVm(&context, request, &vm), vm);
}

int StartCommand(Session& session, const std::string& name) {
  hvstack::v1::StartVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kWorkerDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->StartVm(&context, request, &vm), vm);
}

int StopCommand(Session& session, const std::string& name) {
  hvstack::v1::StopVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kWorkerDeadline);
  hvstack::v1::Vm vm;
  return PrintVm(session, session.stub->StopVm(&context, request, &vm), vm);
}

int DeleteCommand(Session& session, const std::string& name) {
  hvstack::v1::DeleteVmRequest request;
  request.set_name(name);
  grpc::ClientContext context;
  SetDeadline(context, kQuickDeadline);
  google::protobuf::Empty empty;
  grpc::Status status = session.stub->DeleteVm(&context, request, &empty);
  if (!status.ok()) return Fail(session, status);
  if (session.json) *session.out << FormatJson(empty);
  return kExitOk;
}

int EventsCommand(Session& session, uint64_t since, bool follow) {
  hvstack::v1::WatchEventsRequest request;
  request.set_after_sequence(since);
  request.set_follow(follow);
  grpc::ClientContext context;
  if (!follow) SetDeadline(context, kQuickDeadline);
  auto reader = session.stub->WatchEvents(&context, request);
  if (!session.json) *session.out << EventTableHeader() << std::flush;
  hvstack::v1::VmEvent event;
  while (reader->Read(&event)) {
    *session.out << (session.json ? FormatJson(event) : FormatEventLine(event))
                 << std::flush;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(session, status);
  return kExitOk;
}

namespace {

int StreamConsole(Session& session, const std::string& name, bool follow) {
  hvstack::v1::StreamConsoleRequest request;
  request.set_name(name);
  request.set_follow(follow);
  grpc::ClientContext
      context;  // No deadline: following a console is open-ended.
  auto reader = session.stub->StreamConsole(&context, request);
  hvstack::v1::ConsoleChunk chunk;
  while (reader->Read(&chunk)) {
    session.out->write(chunk.data().data(),
                       static_cast<std::streamsize>(chunk.data().size()));
    session.out->flush();  // Interactive: show each chunk as it arrives.
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return Fail(session, status);
  return kExitOk;
}

}  // namespace

int ConsoleCommand(Session& session, const std::string& name, bool follow) {
  if (!follow) return StreamConsole(session, name, false);

  grpc::ClientContext context;  // No deadline: a console is open-ended.
  auto stream = session.stub->AttachConsole(&context);
  hvstack::v1::AttachConsoleRequest request;
  request.set_name(name);
  stream->Write(request);  // A failure shows in Finish().

  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) != 0) {
    *session.err << "vmctl: cannot create a pipe: " << std::strerror(errno)
                 << "\n";
    return kExitOther;
  }
  struct Pipe {
    int fds[2];
    int get_read() const { return fds[0]; }
    int get_write() const { return fds[1]; }
    ~Pipe() {
      ::close(fds[0]);
      ::close(fds[1]);
    }
  } pipe{{wake[0], wake[1]}};

  RawTerminal terminal(session.in_fd);
  if (terminal.active()) {
    *session.err << "vmctl: connected to " << name
                 << "'s console; escape character is ^]\r\n";
    session.err->flush();
  }

  // Output: everything the stream carries, until it ends.
  std::atomic<bool> received{false};
  std::thread reader([&] {
    hvstack::v1::ConsoleChunk chunk;
    while (stream->Read(&chunk)) {
      received = true;
      session.out->write(chunk.data().data(),
                         static_cast<std::streamsize>(chunk.data().size()));
      session.out->flush();
      if (chunk.ended()) (void)!::write(pipe.get_write(), "e", 1);
    }
    (void)!::write(pipe.get_write(), "x", 1);
  });

  // Input: session.in_fd -> the stream, until the output ends, Ctrl-] (on a
  // terminal) or the stream breaks. The end of a non-terminal input is not a
  // detach: the output is followed on.
  bool detached = false;
  bool input_open = session.in_fd >= 0;
  while (true) {
    pollfd fds[2] = {{pipe.get_read(), POLLIN, 0}, {session.in_fd, POLLIN, 0}};
    const int n = ::poll(fds, input_open ? 2 : 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[0].revents != 0) break;
    if (!input_open || fds[1].revents == 0) continue;
    char buf[4096];
    const ssize_t got = ::read(session.in_fd, buf, sizeof(buf));
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) {
      input_open = false;
      continue;
    }
    std::string data(buf, static_cast<size_t>(got));
    if (terminal.active()) {
      if (const size_t escape = data.find(kConsoleEscape);
          escape != std::string::npos) {
        data.resize(escape);
        detached = true;
      }
    }
    if (!data.empty()) {
      request.clear_name();
      request.set_data(data);
      if (!stream->Write(request)) break;
    }
    if (detached) break;
  }
  // Closing our side ends the call (a detach) or acknowledges `ended`.
  stream->WritesDone();
  reader.join();
  grpc::Status status = stream->Finish();
  terminal.Restore();
  if (detached) *session.err << "\r\nvmctl: detached from " << name << "\n";
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && !received) {
    // An older vmms: follow the output only.
    return StreamConsole(session, name, true);
  }
  if (!status.ok()) return Fail(session, status);
  return kExitOk;
}

bool ParseKvpPool(const std::string& text, hvstack::v1::KvpPool* pool) {
  static const std::pair<const char*, hvstack::v1::KvpPool> kPools[] = {
      {"external", hvstack::v1::KVP_POOL_EXTERNAL},
      {"guest", hvstack::v1::KVP_POOL_GUEST},
      {"auto", hvstack::v1::KVP_POOL_AUTO},
      {"auto_external", hvstack::v1::KVP_POOL_AUTO_EXTERNAL},
      {"auto_internal", hvstack::v1::KVP_POOL_AUTO_INTERNAL},
  };
  for (const auto& [n, p] : kPools) {
    if (text == n) {
      *pool = p;
      return true;
    }
  }
  return false;
}

namespace {

// The guest answers KVP requests; the worker waits 10 s for it.
constexpr auto kGuestDeadline = std::chrono::seconds(20);

int BadPool(Session& session, const std::string& pool) {
  *session.err << "vmctl: INVALID_ARGUMENT: unknown KVP pool '" << pool
               << "'; use external, guest, auto, auto_external or "
                  "auto_internal\n";
  return kExitInvalidArgument;
}

}  // namespace

int KvpGetCommand(Session& session, const std::string& name,
                  const std::string& pool, const std::string& key) {
  hvstack::v1::GetKvpRequest request;
  request.set_name(name);
  request.set_key(key);
  hvstack::v1::KvpPool p;
  if (!ParseKvpPool(pool, &p)) return BadPool(session, pool);
  request.set_pool(p);
  grpc::ClientContext context;
  SetDeadline(context, kGuestDeadline);
  hvstack::v1::KvpItem item;
  grpc::Status status = session.stub->GetKvp(&context, request, &item);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(item) : item.value() + "\n");
  return kExitOk;
}

int KvpSetCommand(Session& session, const std::string& name,
                  const std::string& pool, const std::string& key,
                  const std::string& value) {
  hvstack::v1::SetKvpRequest request;
  request.set_name(name);
  request.set_key(key);
  request.set_value(value);
  hvstack::v1::KvpPool p;
  if (!ParseKvpPool(pool, &p)) return BadPool(session, pool);
  request.set_pool(p);
  grpc::ClientContext context;
  SetDeadline(context, kGuestDeadline);
  hvstack::v1::SetKvpResponse response;
  grpc::Status status = session.stub->SetKvp(&context, request, &response);
  if (!status.ok()) return Fail(session, status);
  if (session.json) *session.out << FormatJson(response);
  return kExitOk;
}

int KvpListCommand(Session& session, const std::string& name,
                   const std::string& pool) {
  hvstack::v1::ListKvpRequest request;
  request.set_name(name);
  hvstack::v1::KvpPool p;
  if (!ParseKvpPool(pool, &p)) return BadPool(session, pool);
  request.set_pool(p);
  grpc::ClientContext context;
  SetDeadline(context, kGuestDeadline);
  hvstack::v1::ListKvpResponse response;
  grpc::Status status = session.stub->ListKvp(&context, request, &response);
  if (!status.ok()) return Fail(session, status);
  *session.out << (session.json ? FormatJson(response)
                                : FormatKvpItems(response));
  return kExitOk;
}

}  // namespace vmctl
