// A gRPC client of vmms that first becomes another user, for access_test:
//   access_probe SOCKET UID GID GROUPS VERB NAME [KERNEL]
// GROUPS is a comma-separated list of supplementary gids or "-" for none;
// VERB is "create" (CreateVm NAME with KERNEL) or "get" (GetVm NAME).
// Started as root (so that it can be loaded from Bazel's runfiles under
// /root), it drops to UID/GID/GROUPS before connecting: the credentials vmms
// sees through SO_PEERCRED are those. Prints "<code> <message>" (0 = OK).
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr,
                 "usage: access_probe SOCKET UID GID GROUPS VERB NAME "
                 "[KERNEL]\n");
    return 2;
  }
  uid_t uid = 0;
  gid_t gid = 0;
  if (!absl::SimpleAtoi(argv[2], &uid) || !absl::SimpleAtoi(argv[3], &gid)) {
    std::fprintf(stderr, "bad uid/gid\n");
    return 2;
  }
  std::vector<gid_t> groups;
  if (std::string(argv[4]) != "-") {
    for (absl::string_view g : absl::StrSplit(argv[4], ',')) {
      gid_t value = 0;
      if (!absl::SimpleAtoi(g, &value)) return 2;
      groups.push_back(value);
    }
  }
  if (setgroups(groups.size(), groups.data()) != 0 || setgid(gid) != 0 ||
      setuid(uid) != 0 || getuid() != uid) {
    std::perror("dropping privileges");
    return 2;
  }
  auto channel = grpc::CreateChannel(std::string("unix:") + argv[1],
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::v1::VmService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(20));
  hvstack::v1::Vm vm;
  grpc::Status status;
  const std::string verb = argv[5];
  if (verb == "create" && argc >= 8) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(argv[6]);
    request.mutable_config()->set_vcpus(1);
    request.mutable_config()->set_memory_mib(16);
    request.mutable_config()->set_kernel_path(argv[7]);
    status = stub->CreateVm(&context, request, &vm);
  } else if (verb == "get") {
    hvstack::v1::GetVmRequest request;
    request.set_name(argv[6]);
    status = stub->GetVm(&context, request, &vm);
  } else {
    std::fprintf(stderr, "unknown verb %s\n", verb.c_str());
    return 2;
  }
  std::printf("%d %s\n", static_cast<int>(status.error_code()),
              status.error_message().c_str());
  return 0;
}
