// GetVm and ListVms latency with 1,000 defined VMs, through the real vmms over
// its unix socket, next to two references measured in the same run:
//   - a gRPC round trip that does no work (grpc.health.v1 Check, same socket);
//   - the SQLite query behind GetVm (one row by name, prepared once), run in
//     this process on vmms.db.
//
//   bazel run -c opt //tests/bench:api_latency [-- --vms=1000 --gets=3000
//       --lists=100]
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/wrappers.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>
#include <sqlite3.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/bench/bench_stats.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

ABSL_FLAG(int, vms, 1000, "VMs defined before measuring");
ABSL_FLAG(int, gets, 3000, "GetVm calls (and as many of each reference)");
ABSL_FLAG(int, lists, 100, "ListVms calls");

namespace {

using hvbench::Percentile;

double MicrosSince(absl::Time t0) {
  return absl::ToDoubleMicroseconds(absl::Now() - t0);
}

void Report(const char* what, const std::vector<double>& us, double ref_p50,
            double ref_p99) {
  double p50 = Percentile(us, 0.5), p99 = Percentile(us, 0.99);
  std::printf("%-44s p50 %8.1f us  p99 %8.1f us", what, p50, p99);
  if (ref_p50 > 0) {
    std::printf("   (%.1fx / %.1fx the empty gRPC round trip)", p50 / ref_p50,
                p99 / ref_p99);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int vms = absl::GetFlag(FLAGS_vms);
  const int gets = absl::GetFlag(FLAGS_gets);
  const int lists = absl::GetFlag(FLAGS_lists);

  hvtest::TempDir dir;
  hvtest::VmmsInstance vmms(dir.path());
  if (absl::Status s = vmms.Start(); !s.ok()) {
    std::fprintf(stderr, "start vmms: %s\n", s.ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel("unix:" + vmms.socket_path(),
                                     grpc::InsecureChannelCredentials());
  auto stub = hvstack::v1::VmService::NewStub(channel);
  const std::string kernel = hvtest::Runfile("guest/hello.elf");

  const absl::Time create_start = absl::Now();
  for (int i = 0; i < vms; ++i) {
    hvstack::v1::CreateVmRequest request;
    request.set_name(absl::StrCat("vm-", i));
    request.mutable_config()->set_vcpus(1);
    request.mutable_config()->set_memory_mib(16);
    request.mutable_config()->set_kernel_path(kernel);
    request.mutable_config()->set_cmdline("console=ttyS0 quiet");
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    grpc::Status s = stub->CreateVm(&context, request, &vm);
    if (!s.ok()) {
      std::fprintf(stderr, "CreateVm vm-%d: %s\n", i,
                   s.error_message().c_str());
      return 1;
    }
  }
  const double create_s = absl::ToDoubleSeconds(absl::Now() - create_start);
  std::printf(
      "defined %d VMs in %.2f s (%.0f CreateVm/s, each one SQLite "
      "transaction + kernel image probe)\n",
      vms, create_s, vms / create_s);

  std::mt19937 random(1);
  std::uniform_int_distribution<int> pick(0, vms - 1);

  // Reference 1: grpc.health.v1.Health/Check, an RPC that does no work, made
  // the way the generated stubs make GetVm (a blocking unary call), so that
  // the difference is vmms's work. Health messages are wire-compatible with
  // Empty / Int32Value.
  const grpc::internal::RpcMethod check("/grpc.health.v1.Health/Check",
                                        grpc::internal::RpcMethod::NORMAL_RPC,
                                        channel);
  std::vector<double> health_us;
  for (int i = 0; i < gets; ++i) {
    grpc::ClientContext context;
    google::protobuf::Empty request;
    google::protobuf::Int32Value response;
    const absl::Time t0 = absl::Now();
    grpc::Status s = grpc::internal::BlockingUnaryCall(
        channel.get(), check, &context, request, &response);
    health_us.push_back(MicrosSince(t0));
    if (!s.ok() || response.value() != 1) {
      std::fprintf(stderr, "health Check: %s\n", s.error_message().c_str());
      return 1;
    }
  }

  // Reference 2: the store's query, without gRPC or vmms.
  std::vector<double> sqlite_us;
  {
    sqlite3* db = nullptr;
    sqlite3_open_v2((vmms.state_dir() + "/vmms.db").c_str(), &db,
                    SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT * FROM vms WHERE name = ?", -1, &stmt,
                       nullptr);
    for (int i = 0; i < gets; ++i) {
      std::string name = absl::StrCat("vm-", pick(random));
      const absl::Time t0 = absl::Now();
      sqlite3_bind_text(stmt, 1, name.data(), static_cast<int>(name.size()),
                        SQLITE_TRANSIENT);
      while (sqlite3_step(stmt) == SQLITE_ROW) {
      }
      sqlite3_reset(stmt);
      sqlite_us.push_back(MicrosSince(t0));
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }

  std::vector<double> get_us;
  for (int i = 0; i < gets; ++i) {
    hvstack::v1::GetVmRequest request;
    request.set_name(absl::StrCat("vm-", pick(random)));
    grpc::ClientContext context;
    hvstack::v1::Vm vm;
    const absl::Time t0 = absl::Now();
    grpc::Status s = stub->GetVm(&context, request, &vm);
    get_us.push_back(MicrosSince(t0));
    if (!s.ok()) {
      std::fprintf(stderr, "GetVm: %s\n", s.error_message().c_str());
      return 1;
    }
  }

  std::vector<double> list_us;
  size_t list_bytes = 0;
  for (int i = 0; i < lists; ++i) {
    grpc::ClientContext context;
    hvstack::v1::ListVmsResponse response;
    const absl::Time t0 = absl::Now();
    grpc::Status s =
        stub->ListVms(&context, hvstack::v1::ListVmsRequest(), &response);
    list_us.push_back(MicrosSince(t0));
    if (!s.ok() || response.vms_size() != vms) {
      std::fprintf(stderr, "ListVms: %s (%d VMs)\n", s.error_message().c_str(),
                   response.vms_size());
      return 1;
    }
    list_bytes = response.ByteSizeLong();
  }

  const double ref50 = Percentile(health_us, 0.5);
  const double ref99 = Percentile(health_us, 0.99);
  std::printf("\n%d VMs defined; %d calls of each but ListVms (%d)\n", vms,
              gets, lists);
  Report("reference: empty gRPC round trip (health)", health_us, 0, 0);
  Report("reference: SQLite SELECT one VM by name", sqlite_us, 0, 0);
  Report("GetVm", get_us, ref50, ref99);
  Report(absl::StrCat("ListVms (", vms, " VMs, ", list_bytes / 1024,
                      " KiB response)")
             .c_str(),
         list_us, ref50, ref99);
  std::printf(
      "GetVm - empty round trip (p50): %.1f us of vmms work per call; "
      "ListVms per VM (p50): %.2f us\n",
      Percentile(get_us, 0.5) - ref50, Percentile(list_us, 0.5) / vms);
  return 0;
}
