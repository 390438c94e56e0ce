// Malformed requests to every public RPC of VmService, against a real vmms
// with two VMs (one Off, one Running //guest:spin). Each case checks the gRPC
// code, that the message names the field (or VM, or state) at fault, and that
// the database did not change at all (vms, state history and event log).
// `EveryRpcIsCovered` fails when the service gains an RPC with no case here.
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/hvstack/v1/vm.grpc.pb.h"
#include "tests/harness/process.h"
#include "tests/harness/vmms_instance.h"

namespace hvtest {
namespace {

using hvstack::v1::VmService;
using ::testing::HasSubstr;

using Call =
    std::function<grpc::Status(VmService::Stub*, grpc::ClientContext*)>;

struct Case {
  std::string rpc;          // The method name, for coverage.
  std::string description;  // What is wrong with the request.
  Call call;
  grpc::StatusCode code;
  std::vector<std::string> mentions;  // Substrings the message must contain.
};

// Everything a request could change: every row of vms and vm_state_history,
// and the last event.
std::string Snapshot(const std::string& db_path) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    sqlite3_close(db);
    return "cannot open " + db_path;
  }
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql :
       {"SELECT * FROM vms ORDER BY uuid",
        "SELECT * FROM vm_state_history ORDER BY id",
        "SELECT COALESCE(MAX(sequence), 0), COUNT(*) FROM events"}) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      absl::StrAppend(&out, sql, ": ", sqlite3_errmsg(db), "\n");
      continue;
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const unsigned char* t = sqlite3_column_text(stmt, i);
        absl::StrAppend(&out, t == nullptr ? "NULL" : (const char*)t, "|");
      }
      out += "\n";
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return out;
}

grpc::Status StreamConsole(VmService::Stub* stub, grpc::ClientContext* context,
                           const std::string& name) {
  hvstack::v1::StreamConsoleRequest request;
  request.set_name(name);
  auto reader = stub->StreamConsole(context, request);
  hvstack::v1::ConsoleChunk chunk;
  while (reader->Read(&chunk)) {
  }
  return reader->Finish();
}

grpc::Status AttachConsole(VmService::Stub* stub, grpc::ClientContext* context,
                           const hvstack::v1::AttachConsoleRequest& first) {
  auto stream = stub->AttachConsole(context);
  stream->Write(first);
  stream->WritesDone();
  hvstack::v1::ConsoleChunk chunk;
  while (stream->Read(&chunk)) {
  }
  return stream->Finish();
}

grpc::Status WatchEvents(VmService::Stub* stub, grpc::ClientContext* context,
                         const hvstack::v1::WatchEventsRequest& request) {
  auto reader = stub->WatchEvents(context, request);
  hvstack::v1::VmEvent event;
  while (reader->Read(&event)) {
  }
  return reader->Finish();
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "needs read/write access to /dev/kvm";
    }
    vmms_ = std::make_unique<VmmsInstance>(dir_.path());
    ASSERT_TRUE(vmms_->Start().ok()) << vmms_->Log();
    stub_ = VmService::NewStub(grpc::CreateChannel(
        "unix:" + vmms_->socket_path(), grpc::InsecureChannelCredentials()));
    ASSERT_EQ(
        vmms_->Vmctl({"create", "off1", "--kernel", Hello(), "--memory", "16"})
            ->exit_code,
        0);
    ASSERT_EQ(vmms_
                  ->Vmctl({"create", "run1", "--kernel",
                           Runfile("guest/spin.elf"), "--memory", "16"})
                  ->exit_code,
              0);
    ASSERT_EQ(vmms_->Vmctl({"start", "run1"})->exit_code, 0);
  }
  void TearDown() override {
    if (vmms_ != nullptr) (void)vmms_->Terminate();  // Stops run1's worker.
  }

  static std::string Hello() { return Runfile("guest/hello.elf"); }

  static hvstack::v1::VmConfig GoodConfig() {
    hvstack::v1::VmConfig config;
    config.set_vcpus(1);
    config.set_memory_mib(16);
    config.set_kernel_path(Hello());
    return config;
  }

  // Runs every case; a failure names the case.
  void Run(const std::vector<Case>& cases) {
    const std::string db = vmms_->state_dir() + "/vmms.db";
    for (const Case& c : cases) {
      SCOPED_TRACE(c.rpc + ": " + c.description);
      const std::string before = Snapshot(db);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(20));
      grpc::Status status = c.call(stub_.get(), &context);
      EXPECT_EQ(status.error_code(), c.code) << status.error_message();
      for (const std::string& m : c.mentions) {
        EXPECT_THAT(status.error_message(), HasSubstr(m));
      }
      // A message echoes what it must, not a megabyte of request.
      EXPECT_LT(status.error_message().size(), 1024u);
      EXPECT_EQ(Snapshot(db), before) << "the database changed";
      covered_.insert(c.rpc);
    }
  }

  TempDir dir_;
  std::unique_ptr<VmmsInstance> vmms_;
  std::unique_ptr<VmService::Stub> stub_;
  static std::set<std::string> covered_;
};

std::set<std::string> BadInputTest::covered_;

using ByName = grpc::Status (*)(VmService::Stub*, grpc::ClientContext*,
                                const std::string&);

// An RPC whose request names a VM, called with `name`.
#define BY_NAME(Rpc, Response)                                       \
  static_cast<ByName>([](VmService::Stub* s, grpc::ClientContext* c, \
                         const std::string& name) {                  \
    hvstack::v1::Rpc##Request request;                               \
    request.set_name(name);                                          \
    Response response;                                               \
    return s->Rpc(c, request, &response);                            \
  })

// Bad and unknown names, for an RPC that takes a VM name.
std::vector<Case> NameCases(const std::string& rpc, ByName call) {
  std::vector<Case> cases;
  auto add = [&](const std::string& what, const std::string& name,
                 grpc::StatusCode code, std::vector<std::string> mentions) {
    cases.push_back({rpc, what,
                     [call, name](VmService::Stub* s, grpc::ClientContext* c) {
                       return call(s, c, name);
                     },
                     code, std::move(mentions)});
  };
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  add("empty name", "", kInvalid, {"name", "1-63 characters"});
  add("64-character name", std::string(64, 'a'), kInvalid, {"name"});
  add("100,000-character name", std::string(100000, 'a'), kInvalid,
      {"name", "(100000 bytes)"});
  add("upper case", "Web1", kInvalid, {"name", "Web1"});
  add("underscore", "web_1", kInvalid, {"name"});
  add("path", "../etc", kInvalid, {"name"});
  add("leading hyphen", "-web", kInvalid, {"name"});
  add("trailing hyphen", "web-", kInvalid, {"name"});
  add("NUL inside", std::string("we\0b", 4), kInvalid, {"name"});
  add("non-ASCII (valid UTF-8)", "v\xc3\xa9m", kInvalid, {"name"});
  add("unknown VM", "nosuchvm", grpc::StatusCode::NOT_FOUND, {"'nosuchvm'"});
  return cases;
}

// The same request, but for a VM in a state that forbids it.
Case WrongState(const std::string& rpc, ByName call, const std::string& vm,
                const std::string& state) {
  return {rpc,
          "VM " + vm + " is " + state,
          [call, vm](VmService::Stub* s, grpc::ClientContext* c) {
            return call(s, c, vm);
          },
          grpc::StatusCode::FAILED_PRECONDITION,
          {vm, state}};
}

TEST_F(BadInputTest, NamesOfEveryRpcThatTakesOne) {
  struct Rpc {
    std::string name;
    ByName call;
  };
  const std::vector<Rpc> rpcs = {
      {"GetVm", BY_NAME(GetVm, hvstack::v1::Vm)},
      {"StartVm", BY_NAME(StartVm, hvstack::v1::Vm)},
      {"StopVm", BY_NAME(StopVm, hvstack::v1::Vm)},
      {"DeleteVm", BY_NAME(DeleteVm, google::protobuf::Empty)},
      {"StreamConsole",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         return StreamConsole(s, c, n);
       }},
      {"AttachConsole",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::AttachConsoleRequest first;
         first.set_name(n);
         return AttachConsole(s, c, first);
       }},
  };
  for (const Rpc& rpc : rpcs) Run(NameCases(rpc.name, rpc.call));
}

TEST_F(BadInputTest, RequestsTheStateForbids) {
  Run({
      WrongState("StartVm", BY_NAME(StartVm, hvstack::v1::Vm), "run1",
                 "running"),
      WrongState("StopVm", BY_NAME(StopVm, hvstack::v1::Vm), "off1", "off"),
      WrongState("DeleteVm", BY_NAME(DeleteVm, google::protobuf::Empty), "run1",
                 "running"),
  });
}

TEST_F(BadInputTest, CreateVm) {
  std::vector<Case> cases = NameCases(
      "CreateVm",
      [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
        hvstack::v1::CreateVmRequest request;
        request.set_name(n);
        *request.mutable_config() = GoodConfig();
        hvstack::v1::Vm vm;
        return s->CreateVm(c, request, &vm);
      });
  // An unknown name is what CreateVm wants: that case does not apply.
  cases.pop_back();
  auto create = [&](const std::string& what,
                    std::function<void(hvstack::v1::CreateVmRequest*)> edit,
                    grpc::StatusCode code, std::vector<std::string> mentions) {
    cases.push_back({"CreateVm", what,
                     [edit](VmService::Stub* s, grpc::ClientContext* c) {
                       hvstack::v1::CreateVmRequest request;
                       request.set_name("new1");
                       *request.mutable_config() = GoodConfig();
                       edit(&request);
                       hvstack::v1::Vm vm;
                       return s->CreateVm(c, request, &vm);
                     },
                     code, std::move(mentions)});
  };
  using R = hvstack::v1::CreateVmRequest;
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  create("duplicate name", [](R* r) { r->set_name("off1"); },
         grpc::StatusCode::ALREADY_EXISTS, {"off1"});
  create("no config", [](R* r) { r->clear_config(); }, kInvalid,
         {"config.vcpus"});
  create("0 vcpus", [](R* r) { r->mutable_config()->set_vcpus(0); }, kInvalid,
         {"config.vcpus", "0"});
  create("65 vcpus", [](R* r) { r->mutable_config()->set_vcpus(65); }, kInvalid,
         {"config.vcpus", "65", "64"});
  create("2^32-1 vcpus",
         [](R* r) { r->mutable_config()->set_vcpus(4294967295u); }, kInvalid,
         {"config.vcpus", "4294967295"});
  create("0 MiB", [](R* r) { r->mutable_config()->set_memory_mib(0); },
         kInvalid, {"config.memory_mib"});
  create("15 MiB", [](R* r) { r->mutable_config()->set_memory_mib(15); },
         kInvalid, {"config.memory_mib", "15"});
  create("2^64-1 MiB",
         [](R* r) {
           r->mutable_config()->set_memory_mib(18446744073709551615ull);
         },
         kInvalid, {"config.memory_mib", "18446744073709551615"});
  create("no kernel", [](R* r) { r->mutable_config()->clear_kernel_path(); },
         kInvalid, {"config.kernel_path"});
  create("relative kernel path",
         [](R* r) { r->mutable_config()->set_kernel_path("guest/hello.elf"); },
         kInvalid, {"config.kernel_path", "absolute"});
  create("missing kernel file",
         [](R* r) { r->mutable_config()->set_kernel_path("/nonexistent/k"); },
         kInvalid, {"config.kernel_path", "/nonexistent/k"});
  create("kernel is a directory",
         [](R* r) { r->mutable_config()->set_kernel_path("/tmp"); }, kInvalid,
         {"config.kernel_path", "/tmp"});
  create("kernel is not a kernel",
         [](R* r) { r->mutable_config()->set_kernel_path("/etc/passwd"); },
         kInvalid, {"config.kernel_path", "/etc/passwd"});
  create("kernel path of 100,000 bytes",
         [](R* r) {
           r->mutable_config()->set_kernel_path("/" + std::string(99999, 'k'));
         },
         kInvalid, {"config.kernel_path", "100000 bytes", "too long"});
  create("missing kernel with a 4,000-byte path",
         [](R* r) {
           r->mutable_config()->set_kernel_path("/" + std::string(3999, 'k'));
         },
         kInvalid, {"config.kernel_path", "(4000 bytes)"});
  create("relative initrd",
         [](R* r) { r->mutable_config()->set_initrd_path("initrd.img"); },
         kInvalid, {"config.initrd_path", "absolute"});
  create("missing initrd",
         [](R* r) { r->mutable_config()->set_initrd_path("/nonexistent/i"); },
         kInvalid, {"config.initrd_path", "/nonexistent/i"});
  create("initrd is a directory",
         [](R* r) { r->mutable_config()->set_initrd_path("/tmp"); }, kInvalid,
         {"config.initrd_path", "regular file"});
  create("command line longer than any kernel takes",
         [](R* r) { r->mutable_config()->set_cmdline(std::string(5000, 'c')); },
         kInvalid, {"config.cmdline", "5000 bytes", "2047"});
  create("NUL in the command line",
         [](R* r) { r->mutable_config()->set_cmdline(std::string("a\0b", 3)); },
         kInvalid, {"config.cmdline", "NUL", "offset 1"});
  Run(cases);
}

TEST_F(BadInputTest, AttachConsoleWithoutAName) {
  Run({{"AttachConsole",
        "first request names no VM",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::AttachConsoleRequest first;
          first.set_data("input");
          return AttachConsole(s, c, first);
        },
        grpc::StatusCode::INVALID_ARGUMENT,
        {"name"}}});
}

TEST_F(BadInputTest, WatchEvents) {
  Run({{"WatchEvents",
        "after a sequence far beyond the last one",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::WatchEventsRequest request;
          request.set_after_sequence(~uint64_t{0});
          return WatchEvents(s, c, request);
        },
        grpc::StatusCode::OUT_OF_RANGE,
        {"after_sequence 18446744073709551615", "beyond the newest event"}},
       {"WatchEvents",
        "after 2^63 (negative as SQLite's int64)",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::WatchEventsRequest request;
          request.set_after_sequence(uint64_t{1} << 63);
          request.set_follow(true);
          return WatchEvents(s, c, request);
        },
        grpc::StatusCode::OUT_OF_RANGE,
        {"after_sequence 9223372036854775808", "beyond the newest event"}}});
}

// Requests without anything to get wrong: they must simply work.
TEST_F(BadInputTest, RequestsWithoutInput) {
  Run({{"ListVms",
        "empty request",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::ListVmsResponse response;
          return s->ListVms(c, hvstack::v1::ListVmsRequest(), &response);
        },
        grpc::StatusCode::OK,
        {}}});
}

}  // namespace
}  // namespace hvtest
