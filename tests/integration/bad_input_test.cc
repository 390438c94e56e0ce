// Malformed requests to every public RPC of VmService, against a real vmms
// with two VMs (one Off, one Running //guest:idle). Each case checks the gRPC
// code, that the message names the field (or VM, or state) at fault, and that
// the database did not change at all (vms, state history, network adapters and
// event log).
// `EveryRpcIsCovered` fails when the service gains an RPC with no case here.
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
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
        "SELECT * FROM vm_disks ORDER BY vm_uuid, position",
        "SELECT * FROM vm_nics ORDER BY vm_uuid, idx",
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

// One vmms for the whole suite: every case leaves the database as it found
// it (that is checked), so the cases cannot disturb each other.
class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (access("/dev/kvm", R_OK | W_OK) != 0) return;
    dir_ = new TempDir();
    vmms_ = new VmmsInstance(dir_->path());
    if (absl::Status s = vmms_->Start(); !s.ok()) {
      setup_error_ = s.ToString() + "\n" + vmms_->Log();
      return;
    }
    stub_ = VmService::NewStub(
                grpc::CreateChannel("unix:" + vmms_->socket_path(),
                                    grpc::InsecureChannelCredentials()))
                .release();
    // off1 stays Off, with one network adapter (unattached, never started);
    // run1 runs //guest:idle (halted: no CPU) throughout.
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"create", "off1", "--kernel", Hello(),
                                   "--memory", "16", "--nic",
                                   "tap,mac=02:00:00:00:aa:01"},
          std::vector<std::string>{"create", "run1", "--kernel",
                                   Runfile("guest/idle.elf"), "--memory", "16"},
          std::vector<std::string>{"start", "run1"}}) {
      absl::StatusOr<CommandResult> r = vmms_->Vmctl(args);
      if (!r.ok() || r->exit_code != 0) {
        setup_error_ = "vmctl " + absl::StrJoin(args, " ") + ": " +
                       (r.ok() ? r->err : r.status().ToString());
        return;
      }
    }
  }
  static void TearDownTestSuite() {
    if (vmms_ != nullptr) (void)vmms_->Terminate();  // Stops run1's worker.
    delete stub_;
    delete vmms_;
    delete dir_;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "needs read/write access to /dev/kvm";
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
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
      grpc::Status status = c.call(stub_, &context);
      if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED &&
          c.code != grpc::StatusCode::UNIMPLEMENTED) {
        // Declared in the proto, not served yet: its cases wait for it.
        unimplemented_.insert(c.rpc);
        continue;
      }
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

  static TempDir* dir_;
  static VmmsInstance* vmms_;
  static VmService::Stub* stub_;
  static std::string setup_error_;
  static std::set<std::string> covered_;
  static std::set<std::string> unimplemented_;
};

TempDir* BadInputTest::dir_ = nullptr;
VmmsInstance* BadInputTest::vmms_ = nullptr;
VmService::Stub* BadInputTest::stub_ = nullptr;
std::string BadInputTest::setup_error_;
std::set<std::string> BadInputTest::covered_;
std::set<std::string> BadInputTest::unimplemented_;

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

// AddNic of an unattached adapter with a generated MAC: nothing wrong but
// the VM (name or state).
grpc::Status AddTapNic(VmService::Stub* s, grpc::ClientContext* c,
                       const std::string& name) {
  hvstack::v1::AddNicRequest request;
  request.set_name(name);
  hvstack::v1::Vm vm;
  return s->AddNic(c, request, &vm);
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
      {"PauseVm", BY_NAME(PauseVm, hvstack::v1::Vm)},
      {"ResumeVm", BY_NAME(ResumeVm, hvstack::v1::Vm)},
      {"ResetVm", BY_NAME(ResetVm, hvstack::v1::Vm)},
      {"RebootVm", BY_NAME(RebootVm, hvstack::v1::Vm)},
      {"ShutdownVm", BY_NAME(ShutdownVm, hvstack::v1::Vm)},
      {"UpdateVm",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::UpdateVmRequest request;
         request.set_name(n);
         request.mutable_config()->set_autostart(true);
         request.mutable_update_mask()->add_paths("autostart");
         hvstack::v1::Vm vm;
         return s->UpdateVm(c, request, &vm);
       }},
      {"GetVmStats", BY_NAME(GetVmStats, hvstack::v1::VmStats)},
      {"GetKvp",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::GetKvpRequest request;
         request.set_name(n);
         request.set_key("k");
         hvstack::v1::KvpItem item;
         return s->GetKvp(c, request, &item);
       }},
      {"SetKvp",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::SetKvpRequest request;
         request.set_name(n);
         request.set_key("k");
         request.set_value("v");
         hvstack::v1::SetKvpResponse response;
         return s->SetKvp(c, request, &response);
       }},
      {"ListKvp", BY_NAME(ListKvp, hvstack::v1::ListKvpResponse)},
      {"AttachDisk",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::AttachDiskRequest request;
         request.set_name(n);
         request.mutable_disk()->set_path("/nonexistent/disk.raw");
         hvstack::v1::Vm vm;
         return s->AttachDisk(c, request, &vm);
       }},
      {"DetachDisk",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::DetachDiskRequest request;
         request.set_name(n);
         request.set_path("/nonexistent/disk.raw");
         hvstack::v1::Vm vm;
         return s->DetachDisk(c, request, &vm);
       }},
      {"AddNic", AddTapNic},
      {"RemoveNic",
       [](VmService::Stub* s, grpc::ClientContext* c, const std::string& n) {
         hvstack::v1::RemoveNicRequest request;
         request.set_name(n);
         request.set_mac("02:00:00:00:aa:01");
         hvstack::v1::Vm vm;
         return s->RemoveNic(c, request, &vm);
       }},
      {"ListNics", BY_NAME(ListNics, hvstack::v1::ListNicsResponse)},
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
      WrongState("PauseVm", BY_NAME(PauseVm, hvstack::v1::Vm), "off1", "off"),
      WrongState("ResumeVm", BY_NAME(ResumeVm, hvstack::v1::Vm), "run1",
                 "running"),
      WrongState("ResetVm", BY_NAME(ResetVm, hvstack::v1::Vm), "off1", "off"),
      WrongState("RebootVm", BY_NAME(RebootVm, hvstack::v1::Vm), "off1", "off"),
      WrongState("ShutdownVm", BY_NAME(ShutdownVm, hvstack::v1::Vm), "off1",
                 "off"),
      WrongState("ListKvp", BY_NAME(ListKvp, hvstack::v1::ListKvpResponse),
                 "off1", "off"),
      WrongState("AddNic", AddTapNic, "run1", "running"),
      {"RemoveNic",
       "adapter of a running VM",
       [](VmService::Stub* s, grpc::ClientContext* c) {
         hvstack::v1::RemoveNicRequest request;
         request.set_name("run1");
         request.set_mac("02:00:00:00:aa:02");
         hvstack::v1::Vm vm;
         return s->RemoveNic(c, request, &vm);
       },
       grpc::StatusCode::FAILED_PRECONDITION,
       {"run1", "running"}},
      {"UpdateVm",
       "hardware field of a running VM",
       [](VmService::Stub* s, grpc::ClientContext* c) {
         hvstack::v1::UpdateVmRequest request;
         request.set_name("run1");
         request.mutable_config()->set_vcpus(2);
         request.mutable_update_mask()->add_paths("vcpus");
         hvstack::v1::Vm vm;
         return s->UpdateVm(c, request, &vm);
       },
       grpc::StatusCode::FAILED_PRECONDITION,
       {"run1", "running"}},
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

TEST_F(BadInputTest, ShutdownVmTimeoutAndFallback) {
  auto shutdown = [](const std::string& what, int64_t seconds, int32_t nanos,
                     int fallback, std::vector<std::string> mentions) {
    return Case{
        "ShutdownVm", what,
        [=](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::ShutdownVmRequest request;
          request.set_name("run1");
          request.mutable_timeout()->set_seconds(seconds);
          request.mutable_timeout()->set_nanos(nanos);
          request.set_fallback(
              static_cast<hvstack::v1::ShutdownVmRequest::Fallback>(fallback));
          hvstack::v1::Vm vm;
          return s->ShutdownVm(c, request, &vm);
        },
        grpc::StatusCode::INVALID_ARGUMENT, std::move(mentions)};
  };
  Run({
      shutdown("negative timeout", -1, 0, 1, {"timeout", "-1s"}),
      shutdown("zero timeout", 0, 0, 1, {"timeout", "1 ms to 1 h"}),
      shutdown("negative nanos", 1, -5, 1, {"timeout", "-5ns"}),
      shutdown("nanos of 2 s", 0, 2000000000, 1, {"timeout", "2000000000ns"}),
      shutdown("10^12 s", 1000000000000, 0, 1, {"timeout", "1000000000000s"}),
      shutdown("int64 max seconds", INT64_MAX, 0, 1, {"timeout"}),
      shutdown("unknown fallback", 10, 0, 99, {"fallback 99"}),
  });
}

TEST_F(BadInputTest, UpdateVmMaskAndValues) {
  using R = hvstack::v1::UpdateVmRequest;
  auto update = [](const std::string& what, std::function<void(R*)> edit,
                   grpc::StatusCode code, std::vector<std::string> mentions) {
    return Case{"UpdateVm", what,
                [edit](VmService::Stub* s, grpc::ClientContext* c) {
                  R request;
                  request.set_name("off1");
                  edit(&request);
                  hvstack::v1::Vm vm;
                  return s->UpdateVm(c, request, &vm);
                },
                code, std::move(mentions)};
  };
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  auto mask = [](R* r, std::vector<std::string> paths) {
    for (auto& p : paths) r->mutable_update_mask()->add_paths(p);
  };
  Run({
      update("no mask", [](R* r) { r->mutable_config()->set_vcpus(2); },
             kInvalid, {"update_mask is empty"}),
      update("mask names the VM's name", [&](R* r) { mask(r, {"name"}); },
             kInvalid, {"update_mask", "'name'", "not an updatable field"}),
      update("mask with the config. prefix",
             [&](R* r) { mask(r, {"config.vcpus"}); }, kInvalid,
             {"'config.vcpus'", "not an updatable field"}),
      update("a path of 100,000 bytes",
             [&](R* r) { mask(r, {std::string(100000, 'p')}); }, kInvalid,
             {"update_mask", "(100000 bytes)"}),
      update("a path twice",
             [&](R* r) {
               mask(r, {"cmdline", "cmdline"});
             },
             kInvalid, {"'cmdline' twice"}),
      update("vcpus 0",
             [&](R* r) {
               mask(r, {"vcpus"});
               r->mutable_config()->set_vcpus(0);
             },
             kInvalid, {"config.vcpus"}),
      update("memory 2^64-1",
             [&](R* r) {
               mask(r, {"memory_mib"});
               r->mutable_config()->set_memory_mib(~uint64_t{0});
             },
             kInvalid, {"config.memory_mib"}),
      update("kernel missing",
             [&](R* r) {
               mask(r, {"kernel_path"});
               r->mutable_config()->set_kernel_path("/nonexistent/k");
             },
             kInvalid, {"config.kernel_path", "/nonexistent/k"}),
      update("kernel cleared", [&](R* r) { mask(r, {"kernel_path"}); },
             kInvalid, {"config.kernel_path is empty"}),
      update("command line too long",
             [&](R* r) {
               mask(r, {"cmdline"});
               r->mutable_config()->set_cmdline(std::string(3000, 'c'));
             },
             kInvalid, {"config.cmdline", "3000 bytes"}),
      update("unknown restart policy",
             [&](R* r) {
               mask(r, {"restart_policy"});
               r->mutable_config()->set_restart_policy(
                   static_cast<hvstack::v1::RestartPolicy>(99));
             },
             kInvalid, {"config.restart_policy 99"}),
      update("unknown guest crash policy",
             [&](R* r) {
               mask(r, {"on_guest_crash"});
               r->mutable_config()->set_on_guest_crash(
                   static_cast<hvstack::v1::GuestCrashPolicy>(7));
             },
             kInvalid, {"config.on_guest_crash 7", "GuestCrashPolicy"}),
      update("unknown VM",
             [&](R* r) {
               r->set_name("nosuchvm");
               mask(r, {"autostart"});
             },
             grpc::StatusCode::NOT_FOUND, {"'nosuchvm'"}),
  });
}

TEST_F(BadInputTest, KeyValueExchange) {
  auto set = [](const std::string& what, const std::string& vm, int pool,
                const std::string& key, grpc::StatusCode code,
                std::vector<std::string> mentions) {
    return Case{"SetKvp", what,
                [=](VmService::Stub* s, grpc::ClientContext* c) {
                  hvstack::v1::SetKvpRequest request;
                  request.set_name(vm);
                  request.set_pool(static_cast<hvstack::v1::KvpPool>(pool));
                  request.set_key(key);
                  request.set_value("v");
                  hvstack::v1::SetKvpResponse response;
                  return s->SetKvp(c, request, &response);
                },
                code, std::move(mentions)};
  };
  auto get = [](const std::string& what, const std::string& vm, int pool,
                const std::string& key, grpc::StatusCode code,
                std::vector<std::string> mentions) {
    return Case{"GetKvp", what,
                [=](VmService::Stub* s, grpc::ClientContext* c) {
                  hvstack::v1::GetKvpRequest request;
                  request.set_name(vm);
                  request.set_pool(static_cast<hvstack::v1::KvpPool>(pool));
                  request.set_key(key);
                  hvstack::v1::KvpItem item;
                  return s->GetKvp(c, request, &item);
                },
                code, std::move(mentions)};
  };
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  const auto kState = grpc::StatusCode::FAILED_PRECONDITION;
  Run({
      set("empty key", "run1", 1, "", kInvalid, {"key is empty"}),
      get("empty key", "run1", 1, "", kInvalid, {"key is empty"}),
      set("unknown pool", "run1", 99, "k", kInvalid, {"pool 99"}),
      get("unknown pool", "run1", 99, "k", kInvalid, {"pool 99"}),
      set("a guest-owned pool", "run1", 3, "k", kInvalid, {"auto pools"}),
      set("VM off", "off1", 1, "k", kState, {"off1", "off"}),
      get("VM off", "off1", 1, "k", kState, {"off1", "off"}),
      set("key of 100,000 bytes", "run1", 1, std::string(100000, 'k'), kInvalid,
          {"key", "100000 bytes", "255 UTF-16 characters"}),
      get("key of 256 characters", "run1", 1, std::string(256, 'k'), kInvalid,
          {"key", "255 UTF-16 characters"}),
      {"SetKvp",
       "value of 1024 characters",
       [](VmService::Stub* s, grpc::ClientContext* c) {
         hvstack::v1::SetKvpRequest request;
         request.set_name("run1");
         request.set_pool(hvstack::v1::KVP_POOL_EXTERNAL);
         request.set_key("k");
         request.set_value(std::string(1024, 'v'));
         hvstack::v1::SetKvpResponse response;
         return s->SetKvp(c, request, &response);
       },
       kInvalid,
       {"value of 1024 bytes", "1023 UTF-16 characters"}},
  });
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
        {}},
       {"ListVmStats",
        "empty request",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::ListVmStatsResponse response;
          return s->ListVmStats(c, hvstack::v1::ListVmStatsRequest(),
                                &response);
        },
        grpc::StatusCode::OK,
        {}},
       {"ListNics",
        "a VM without adapters",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::ListNicsRequest request;
          request.set_name("run1");
          hvstack::v1::ListNicsResponse response;
          return s->ListNics(c, request, &response);
        },
        grpc::StatusCode::OK,
        {}},
       {"GetHostInfo",
        "empty request",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::HostInfo info;
          return s->GetHostInfo(c, hvstack::v1::GetHostInfoRequest(), &info);
        },
        grpc::StatusCode::OK,
        {}}});
}

TEST_F(BadInputTest, CreateVmRestartPolicy) {
  Run({{"CreateVm",
        "unknown restart policy",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::CreateVmRequest request;
          request.set_name("new2");
          *request.mutable_config() = GoodConfig();
          request.mutable_config()->set_restart_policy(
              static_cast<hvstack::v1::RestartPolicy>(-3));
          hvstack::v1::Vm vm;
          return s->CreateVm(c, request, &vm);
        },
        grpc::StatusCode::INVALID_ARGUMENT,
        {"config.restart_policy -3"}},
       {"CreateVm",
        "unknown guest crash policy",
        [](VmService::Stub* s, grpc::ClientContext* c) {
          hvstack::v1::CreateVmRequest request;
          request.set_name("new3");
          *request.mutable_config() = GoodConfig();
          request.mutable_config()->set_on_guest_crash(
              static_cast<hvstack::v1::GuestCrashPolicy>(4));
          hvstack::v1::Vm vm;
          return s->CreateVm(c, request, &vm);
        },
        grpc::StatusCode::INVALID_ARGUMENT,
        {"config.on_guest_crash 4"}}});
}

// Network adapters: bridges that are missing or not bridges, malformed,
// multicast and duplicate MACs, MTUs out of range (issue 12).
TEST_F(BadInputTest, NetworkAdapters) {
  std::vector<Case> cases;
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  auto add = [&](const std::string& what,
                 std::function<void(hvstack::v1::NicConfig*)> edit,
                 grpc::StatusCode code, std::vector<std::string> mentions) {
    cases.push_back({"AddNic", what,
                     [edit](VmService::Stub* s, grpc::ClientContext* c) {
                       hvstack::v1::AddNicRequest request;
                       request.set_name("off1");
                       edit(request.mutable_nic());
                       hvstack::v1::Vm vm;
                       return s->AddNic(c, request, &vm);
                     },
                     code, std::move(mentions)});
  };
  using N = hvstack::v1::NicConfig;
  add("bridge that does not exist", [](N* n) { n->set_bridge("nosuchbr0"); },
      kInvalid, {"nic.bridge", "'nosuchbr0' does not exist"});
  add("bridge that is not a bridge", [](N* n) { n->set_bridge("lo"); },
      kInvalid, {"nic.bridge", "'lo' is not a bridge"});
  add("bridge name of 16 characters",
      [](N* n) { n->set_bridge("abcdefghijklmnop"); }, kInvalid,
      {"nic.bridge", "longer than 15"});
  add("bridge name with a slash", [](N* n) { n->set_bridge("br/0"); }, kInvalid,
      {"nic.bridge", "'br/0'"});
  add("MAC of 5 octets", [](N* n) { n->set_mac("02:00:00:00:00"); }, kInvalid,
      {"nic.mac", "'02:00:00:00:00'", "not a valid MAC"});
  add("MAC with a non-hex digit", [](N* n) { n->set_mac("02:00:00:00:00:0g"); },
      kInvalid, {"nic.mac", "'02:00:00:00:00:0g'"});
  add("MAC with dashes", [](N* n) { n->set_mac("02-00-00-00-00-01"); },
      kInvalid, {"nic.mac", "'02-00-00-00-00-01'"});
  add("MAC of 100,000 bytes",
      [](N* n) { n->set_mac(std::string(100000, 'a')); }, kInvalid,
      {"nic.mac", "(100000 bytes)"});
  add("multicast MAC", [](N* n) { n->set_mac("01:00:5e:00:00:01"); }, kInvalid,
      {"nic.mac", "'01:00:5e:00:00:01'", "multicast"});
  add("broadcast MAC", [](N* n) { n->set_mac("ff:ff:ff:ff:ff:ff"); }, kInvalid,
      {"nic.mac", "multicast"});
  add("all-zero MAC", [](N* n) { n->set_mac("00:00:00:00:00:00"); }, kInvalid,
      {"nic.mac", "all zeros"});
  add("MAC another adapter has", [](N* n) { n->set_mac("02:00:00:00:AA:01"); },
      kInvalid,
      {"nic.mac", "'02:00:00:00:aa:01'", "already used by VM 'off1'"});
  add("MTU 67", [](N* n) { n->set_mtu(67); }, kInvalid, {"nic.mtu", "67"});
  add("MTU 9001", [](N* n) { n->set_mtu(9001); }, kInvalid,
      {"nic.mtu", "9001", "9000"});

  auto remove = [&](const std::string& what, const std::string& mac,
                    grpc::StatusCode code, std::vector<std::string> mentions) {
    cases.push_back({"RemoveNic", what,
                     [mac](VmService::Stub* s, grpc::ClientContext* c) {
                       hvstack::v1::RemoveNicRequest request;
                       request.set_name("off1");
                       request.set_mac(mac);
                       hvstack::v1::Vm vm;
                       return s->RemoveNic(c, request, &vm);
                     },
                     code, std::move(mentions)});
  };
  remove("no MAC", "", kInvalid, {"mac is empty"});
  remove("malformed MAC", "02:00", kInvalid, {"mac", "'02:00'"});
  remove("MAC the VM does not have", "02:00:00:00:aa:09",
         grpc::StatusCode::NOT_FOUND, {"off1", "'02:00:00:00:aa:09'"});

  auto create = [&](const std::string& what,
                    std::function<void(hvstack::v1::VmConfig*)> edit,
                    std::vector<std::string> mentions) {
    cases.push_back({"CreateVm", what,
                     [edit](VmService::Stub* s, grpc::ClientContext* c) {
                       hvstack::v1::CreateVmRequest request;
                       request.set_name("new3");
                       *request.mutable_config() = GoodConfig();
                       edit(request.mutable_config());
                       hvstack::v1::Vm vm;
                       return s->CreateVm(c, request, &vm);
                     },
                     kInvalid, std::move(mentions)});
  };
  using C = hvstack::v1::VmConfig;
  create("adapter on a missing bridge",
         [](C* c) {
           c->add_nics();
           c->add_nics()->set_bridge("nosuchbr0");
         },
         {"config.nics[1].bridge", "'nosuchbr0' does not exist"});
  create("the same MAC twice",
         [](C* c) {
           c->add_nics()->set_mac("02:00:00:00:bb:01");
           c->add_nics()->set_mac("02:00:00:00:BB:01");
         },
         {"config.nics[1].mac", "'02:00:00:00:bb:01'", "duplicate"});
  create("a MAC another VM has",
         [](C* c) { c->add_nics()->set_mac("02:00:00:00:aa:01"); },
         {"config.nics[0].mac", "already used by VM 'off1'"});
  create("malformed MAC", [](C* c) { c->add_nics()->set_mac("nonsense"); },
         {"config.nics[0].mac", "'nonsense'"});
  create("9 adapters",
         [](C* c) {
           for (int i = 0; i < 9; ++i) c->add_nics();
         },
         {"config.nics", "at most 8"});
  Run(cases);
}

// Last (gtest runs a suite's tests in the order they are defined): every RPC
// of the service had cases, or is declared but not served yet.
// Disks at create and attach: every problem is INVALID_ARGUMENT naming the
// field, the path and the problem; nothing is written.
TEST_F(BadInputTest, Disks) {
  const std::string dir = dir_->path();
  const std::string raw = dir + "/disk.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + raw).c_str()), 0);
  const std::string odd = dir + "/odd.raw";
  ASSERT_EQ(std::system(("truncate -s 1000 " + odd).c_str()), 0);
  const std::string qcow2 = dir + "/disk.qcow2";
  const bool have_qemu_img =
      std::system(("qemu-img create -q -f qcow2 " + qcow2 + " 1M").c_str()) ==
      0;
  ASSERT_TRUE(have_qemu_img) << "needs qemu-img (qemu-utils)";
  using hvstack::v1::Disk;
  const auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;
  struct Problem {
    std::string what;
    std::function<void(Disk*)> edit;
    std::vector<std::string> mentions;
  };
  const std::vector<Problem> problems = {
      {"missing file",
       [](Disk* d) { d->set_path("/nonexistent/disk.raw"); },
       {"/nonexistent/disk.raw", "does not exist"}},
      {"a directory",
       [](Disk* d) { d->set_path("/tmp"); },
       {"'/tmp'", "is a directory"}},
      {"unreadable (a write-only sysctl)",
       [](Disk* d) { d->set_path("/proc/sys/vm/compact_memory"); },
       {"compact_memory", "cannot be opened for reading"}},
      {"a device node",
       [](Disk* d) { d->set_path("/dev/null"); },
       {"/dev/null", "not a regular file"}},
      {"raw data as qcow2",
       [raw](Disk* d) {
         d->set_path(raw);
         d->set_format(hvstack::v1::DISK_FORMAT_QCOW2);
       },
       {raw, "is not a qcow2 image"}},
      {"a qcow2 image as raw",
       [qcow2](Disk* d) {
         d->set_path(qcow2);
         d->set_format(hvstack::v1::DISK_FORMAT_RAW);
       },
       {qcow2, "is a qcow2 image, not raw"}},
      {"a qcow2 image as vhdx",
       [qcow2](Disk* d) {
         d->set_path(qcow2);
         d->set_format(hvstack::v1::DISK_FORMAT_VHDX);
       },
       {qcow2, "not vhdx"}},
      {"size not a multiple of 512",
       [odd](Disk* d) { d->set_path(odd); },
       {odd, "not a multiple of 512"}},
      {"relative path",
       [](Disk* d) { d->set_path("disk.raw"); },
       {"disk.raw", "absolute"}},
      {"empty path", [](Disk* d) { d->clear_path(); }, {"path is empty"}},
      {"path of 100,000 bytes",
       [](Disk* d) { d->set_path("/" + std::string(99999, 'p')); },
       {"(100000 bytes)", "too long"}},
      {"unknown format",
       [raw](Disk* d) {
         d->set_path(raw);
         d->set_format(static_cast<hvstack::v1::DiskFormat>(9));
       },
       {"format 9", "DiskFormat"}},
      {"serial given",
       [raw](Disk* d) {
         d->set_path(raw);
         d->set_serial("mine");
       },
       {"serial", "assigned by vmms"}},
      {"address out of range",
       [raw](Disk* d) {
         d->set_path(raw);
         d->mutable_address()->set_lun(64);
       },
       {"0:0:64", "out of range"}},
      {"another controller",
       [raw](Disk* d) {
         d->set_path(raw);
         d->mutable_address()->set_controller(1);
       },
       {"1:0:0", "out of range"}},
  };
  std::vector<Case> cases;
  for (const Problem& p : problems) {
    std::vector<std::string> create_mentions = p.mentions;
    create_mentions.push_back("config.disks[0]");
    cases.push_back(
        {"CreateVm", "disk: " + p.what,
         [edit = p.edit](VmService::Stub* s, grpc::ClientContext* c) {
           hvstack::v1::CreateVmRequest request;
           request.set_name("new1");
           *request.mutable_config() = GoodConfig();
           edit(request.mutable_config()->add_disks());
           hvstack::v1::Vm vm;
           return s->CreateVm(c, request, &vm);
         },
         kInvalid, create_mentions});
    cases.push_back(
        {"AttachDisk", p.what,
         [edit = p.edit](VmService::Stub* s, grpc::ClientContext* c) {
           hvstack::v1::AttachDiskRequest request;
           request.set_name("off1");
           edit(request.mutable_disk());
           hvstack::v1::Vm vm;
           return s->AttachDisk(c, request, &vm);
         },
         kInvalid, p.mentions});
  }
  cases.push_back({"CreateVm",
                   "the same image twice",
                   [raw](VmService::Stub* s, grpc::ClientContext* c) {
                     hvstack::v1::CreateVmRequest request;
                     request.set_name("new1");
                     *request.mutable_config() = GoodConfig();
                     request.mutable_config()->add_disks()->set_path(raw);
                     request.mutable_config()->add_disks()->set_path(raw);
                     hvstack::v1::Vm vm;
                     return s->CreateVm(c, request, &vm);
                   },
                   kInvalid,
                   {"config.disks[1]", raw, "attached already"}});
  cases.push_back({"AttachDisk",
                   "no disk",
                   [](VmService::Stub* s, grpc::ClientContext* c) {
                     hvstack::v1::AttachDiskRequest request;
                     request.set_name("off1");
                     hvstack::v1::Vm vm;
                     return s->AttachDisk(c, request, &vm);
                   },
                   kInvalid,
                   {"disk is missing"}});
  cases.push_back({"AttachDisk",
                   "VM running",
                   [raw](VmService::Stub* s, grpc::ClientContext* c) {
                     hvstack::v1::AttachDiskRequest request;
                     request.set_name("run1");
                     request.mutable_disk()->set_path(raw);
                     hvstack::v1::Vm vm;
                     return s->AttachDisk(c, request, &vm);
                   },
                   grpc::StatusCode::FAILED_PRECONDITION,
                   {"run1", "running"}});
  auto detach = [&](const std::string& what, const std::string& vm,
                    std::function<void(hvstack::v1::DetachDiskRequest*)> edit,
                    grpc::StatusCode code, std::vector<std::string> mentions) {
    cases.push_back({"DetachDisk", what,
                     [vm, edit](VmService::Stub* s, grpc::ClientContext* c) {
                       hvstack::v1::DetachDiskRequest request;
                       request.set_name(vm);
                       edit(&request);
                       hvstack::v1::Vm out;
                       return s->DetachDisk(c, request, &out);
                     },
                     code, std::move(mentions)});
  };
  using D = hvstack::v1::DetachDiskRequest;
  detach("neither path nor address", "off1", [](D*) {}, kInvalid,
         {"path or its address"});
  detach("both path and address", "off1",
         [](D* r) {
           r->set_path("/x");
           r->mutable_address()->set_lun(0);
         },
         kInvalid, {"not both"});
  detach("a disk the VM does not have", "off1",
         [](D* r) { r->set_path("/nonexistent/disk.raw"); },
         grpc::StatusCode::NOT_FOUND, {"off1", "/nonexistent/disk.raw"});
  detach("an address the VM does not use", "off1",
         [](D* r) { r->mutable_address()->set_lun(63); },
         grpc::StatusCode::NOT_FOUND, {"off1", "0:0:63"});
  detach("VM running", "run1", [](D* r) { r->set_path("/x"); },
         grpc::StatusCode::FAILED_PRECONDITION, {"run1", "running"});
  detach("path of 100,000 bytes", "off1",
         [](D* r) { r->set_path("/" + std::string(99999, 'p')); }, kInvalid,
         {"too long"});
  Run(cases);
}

TEST_F(BadInputTest, ZzEveryRpcIsCovered) {
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "hvstack.v1.VmService");
  ASSERT_NE(service, nullptr);
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string name = service->method(i)->name();
    EXPECT_TRUE(covered_.count(name) > 0 || unimplemented_.count(name) > 0)
        << name << " has no bad-input case in this file";
    if (unimplemented_.count(name) > 0 && covered_.count(name) == 0) {
      std::printf("%s: declared, not served yet (UNIMPLEMENTED)\n",
                  name.c_str());
    }
  }
}

}  // namespace
}  // namespace hvtest
